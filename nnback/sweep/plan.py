"""Which trials a sweep runs: ids, parameters and seeds, the same in every folder.

A trial is one training run of the base experiment with some parameter values and a
training seed. Its id, ``0007-3f9c2a1b``, is its index in the sweep and a hash of the
sweep seed, the index, the parameters and the repeat, so ids sort in planning order and
the same sweep file always names the same trials. A trial's training seed depends only
on the sweep seed and the repeat: repeat ``r`` of every combination trains with the same
seed, so differences between combinations come from their parameters, not from luck.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math

import numpy as np

from nnback.sweep.spec import SweepSpec


@dataclasses.dataclass(frozen=True)
class Trial:
    """One planned training run.

    Attributes:
        id: ``<index>-<hash>``, the name of its folder under ``trials/``.
        index: position in the sweep (0-based); ties in score go to the lower one.
        params: the varied keys and their values, in the sweep file's order.
        repeat: which of the ``repeats`` training seeds (0-based).
        seed: the experiment seed the trial trains with.
    """

    id: str
    index: int
    params: dict
    repeat: int
    seed: int

    def record(self) -> dict:
        """The journal fields that define the trial."""
        return {"trial": self.id, "index": self.index, "params": self.params, "repeat": self.repeat,
                "seed": self.seed}


def _digest(*parts) -> bytes:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()




def trial_seed(sweep_seed: int, repeat: int) -> int:
    """The training seed of repeat ``repeat``: a 31-bit number drawn from the sweep seed."""
    return int.from_bytes(_digest("seed", sweep_seed, repeat)[:4], "little") >> 1


def make_trial(spec: SweepSpec, combination: int, params: dict, repeat: int) -> Trial:
    """Trial number ``combination * repeats + repeat``."""
    index = combination * spec.repeats + repeat
    digest = _digest(spec.seed, index, params, repeat).hex()[:8]
    return Trial(f"{index:04d}-{digest}", index, params, repeat, trial_seed(spec.seed, repeat))


def grid_size(spec: SweepSpec) -> int:
    return math.prod(len(values) for values in spec.parameters.values()) * spec.repeats


def planned_trials(spec: SweepSpec) -> list[Trial]:
    """Every trial of a grid or random sweep, in index order."""
    if spec.method == "grid":
        keys = list(spec.parameters)
        combinations = [dict(zip(keys, values, strict=True))
                        for values in itertools.product(*spec.parameters.values())]
    else:
        combinations = [sample(spec, i) for i in range(spec.trials)]
    return [make_trial(spec, c, params, r)
            for c, params in enumerate(combinations) for r in range(spec.repeats)]


def sample(spec: SweepSpec, combination: int) -> dict:
    """Random draw number ``combination``: it depends on the sweep seed and the number
    alone, so raising ``trials`` keeps the trials already drawn."""
    rng = np.random.default_rng([spec.seed, combination])
    return {key: _draw(rng, values) for key, values in spec.parameters.items()}


def _draw(rng: np.random.Generator, values):
    if isinstance(values, list):
        return values[int(rng.integers(len(values)))]
    low, high = values.bounds
    if values.kind == "int_uniform":
        return int(rng.integers(low, high + 1))
    if values.kind == "log_uniform":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return float(rng.uniform(low, high))
