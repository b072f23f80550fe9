"""What a checkpoint holds and how a run continues from one: ``TrainingState``.

A checkpoint is everything the loop needs to take the same steps with the same numbers
as a run that was never interrupted: the weights and buffers, the optimizer state, the
state of the generator that draws dropout masks, and ``Progress`` (where training
stands). Mini-batches come from a permutation drawn from ``(seed, epoch)``, so the
position inside an epoch is all a resume needs to know about the data order.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nnback.runfolder.snapshot import model_arrays, restore_arrays, role_arrays, run_meta


@dataclasses.dataclass
class Progress:
    """Where training stands; saved in every checkpoint as JSON."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # batches done in the current epoch
    step: int = 0  # optimizer steps (and skipped batches) in all
    loss_sum: float = 0.0  # training loss summed since the last evaluation
    loss_count: int = 0
    best_value: float | None = None
    best_epoch: int = 0
    best_step: int = 0
    evals_since_best: int = 0
    evals: int = 0
    skipped: int = 0  # non-finite batches skipped
    samples: int = 0
    train_seconds: float = 0.0
    status: str = "running"


class TrainingState:
    """The parts of a run a checkpoint saves and restores, and nothing else.

    Args:
        exp: validated experiment (saved as the resolved config).
        bundle: the data (its preprocessing statistics and description are saved).
        model, optimizer: the engine objects being trained.
        rng: the generator of dropout masks.
    """

    def __init__(self, exp, bundle, model, optimizer, rng: np.random.Generator):
        self.exp, self.bundle = exp, bundle
        self.model, self.optimizer, self.rng = model, optimizer, rng
        self.progress = Progress()
        self.threads: int | None = None  # BLAS threads, kept so a resume computes alike

    def arrays(self) -> dict:
        """``model/``, ``prep/`` and ``optim/`` arrays by name (copies)."""
        arrays = model_arrays(self.model, self.bundle)
        arrays.update((f"optim/{k}", v) for k, v in self.optimizer.state_dict().items())
        return arrays

    def meta(self) -> dict:
        """The run's description plus progress and the dropout generator's state (JSON)."""
        meta = run_meta(self.exp, self.bundle)
        meta["progress"] = dataclasses.asdict(self.progress)
        meta["rng"] = self.rng.bit_generator.state
        meta["threads"] = self.threads
        return meta

    def restore(self, arrays: dict, meta: dict) -> None:
        """Continue from a checkpoint's ``(arrays, meta)``.

        Raises:
            KeyError, ValueError: the checkpoint does not fit this model or optimizer.
        """
        restore_arrays(self.model, arrays)
        self.optimizer.load_state_dict(role_arrays(arrays, "optim"))
        self.rng.bit_generator.state = meta["rng"]
        self.progress = Progress(**meta["progress"])
        self.threads = meta.get("threads")

    @staticmethod
    def weights(arrays: dict) -> dict:
        """The ``model/`` arrays of a checkpoint: what ``restore_weights`` puts back."""
        return {k: v for k, v in arrays.items() if k.startswith("model/")}

    def restore_weights(self, weights: dict) -> None:
        """Put saved weights and buffers (``weights(arrays)``) back into the model."""
        restore_arrays(self.model, weights)
