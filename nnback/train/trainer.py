"""The training loop: mini-batches, evaluation, early stopping, checkpoints, stops.

Everything the loop needs to continue exactly where it stopped lives in ``Progress``
and the checkpoint arrays (weights, buffers, optimizer state, the generator state of
dropout), so a resumed run takes the same steps with the same numbers as one that was
never interrupted. Mini-batches come from a permutation drawn from ``(seed, epoch)``,
so the position inside an epoch is all a resume needs to know.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from nnback.build import (
    build_loss,
    build_network,
    build_optimizer,
    build_schedule,
    loss_targets,
    steps_per_epoch,
)
from nnback.layers import BatchNorm1d
from nnback.optim import clip_grad_norm, grad_norm
from nnback.runfolder.atomic import atomic_save_npz
from nnback.runfolder.checkpoint import CheckpointStore
from nnback.runfolder.jsonl import JsonlWriter
from nnback.runfolder.snapshot import model_arrays, restore_arrays, role_arrays, run_meta
from nnback.train.diagnostics import DiagnosticsRecorder
from nnback.train.divergence import Diverged, find_nonfinite, find_nonfinite_grad
from nnback.train.evaluate import evaluate, higher_is_better


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


class Trainer:
    """Trains one experiment on one data bundle into one run folder.

    Building a Trainer builds the model, loss, optimizer and schedule, so everything that
    does not fit the data fails here, before any folder exists; ``open(run_dir)`` then
    binds the run folder.

    Args:
        exp: validated experiment.
        bundle: the loaded data (train/val/test splits, task, classes).
        console: where progress lines go.
        source: the config file name, for error messages.
        deadline: ``time.monotonic()`` by which to stop with a checkpoint, or None.
    """

    def __init__(self, exp, bundle, console, source: str, deadline: float | None = None):
        self.exp, self.bundle, self.console = exp, bundle, console
        self.deadline = deadline
        self.classification = bundle.task == "classification"
        self.rng = np.random.default_rng(exp.seed)
        self.model = build_network(exp, bundle, self.rng, source)
        self.loss_fn = build_loss(exp)
        for split in (bundle.train, bundle.val, bundle.test):
            if split is not None:
                split.y = loss_targets(exp, split.y, self.model.dtype)
        self.optimizer = build_optimizer(exp, self.model)
        n, bs = len(bundle.train), exp.train.batch_size
        self.steps_in_epoch = steps_per_epoch(n, bs)
        if n > bs and n % bs == 1 and any(isinstance(layer, BatchNorm1d) for layer in self.model.layers):
            self.steps_in_epoch -= 1  # a batch of one sample has no batch statistics
        self.total_steps = exp.train.epochs * self.steps_in_epoch
        # Running statistics as they were before the current batch, restored when a
        # non-finite batch is skipped (its forward pass has already moved them).
        self._buffers_before = ([(array, array.copy()) for _, array in self.model.buffers()]
                                if exp.train.divergence.skip_batches else [])
        self._grads = [self.model.flat_grads]  # every gradient, packed: one norm, one scaling
        self.lr_at = build_schedule(exp, self.steps_in_epoch)
        self.run_dir: Path | None = None
        self.store: CheckpointStore | None = None
        self.metrics = None  # opened by fit(), after a resume has trimmed the file
        self.progress = Progress()
        self.best_state: dict | None = None
        self.stop_reason: str | None = None  # set by a signal handler: "SIGTERM" / "SIGINT"
        self.diagnostics = None  # a DiagnosticsRecorder while fit() runs, if configured
        self._last_checkpoint = time.monotonic()
        self._step_seconds = 0.0
        self._checkpoint_seconds = 0.5
        self._eval_seconds = 0.0

    def open(self, run_dir: Path) -> None:
        """Bind the run folder (created, locked and checked writable by the caller)."""
        self.run_dir = Path(run_dir)
        self.store = CheckpointStore(self.run_dir, keep=self.exp.train.checkpoint.keep)

    # --- state -------------------------------------------------------------------

    def checkpoint_arrays(self) -> dict:
        arrays = model_arrays(self.model, self.bundle)
        arrays.update((f"optim/{k}", v) for k, v in self.optimizer.state_dict().items())
        return arrays

    def checkpoint_meta(self) -> dict:
        meta = run_meta(self.exp, self.bundle)
        meta["progress"] = dataclasses.asdict(self.progress)
        meta["rng"] = self.rng.bit_generator.state
        return meta

    def restore(self, arrays: dict, meta: dict, best: tuple | None) -> None:
        """Continue from a checkpoint (and the best-weights checkpoint, if any)."""
        restore_arrays(self.model, arrays)
        self.optimizer.load_state_dict(role_arrays(arrays, "optim"))
        self.rng.bit_generator.state = meta["rng"]
        self.progress = Progress(**meta["progress"])
        if best is not None:
            self.best_state = {k: v for k, v in best[0].items() if k.startswith("model/")}

    def save_checkpoint(self) -> None:
        started = time.monotonic()
        self._require_finite_weights()
        self.store.save(self.progress.step, self.checkpoint_arrays(), self.checkpoint_meta())
        self._last_checkpoint = time.monotonic()
        self._checkpoint_seconds = self._last_checkpoint - started

    def _require_finite_weights(self) -> None:
        for name, param, _ in self.model.parameters():
            if not np.isfinite(param).all():
                raise Diverged(
                    f"epoch {self.progress.epoch + 1}, step {self.progress.step}: "
                    f"parameter {name} is not finite", self.progress
                )

    # --- the loop ----------------------------------------------------------------

    def fit(self) -> str:
        """Train until done, early stopped, out of time or told to stop.

        Returns:
            the final status: ``completed``, ``early_stopped``, ``time_limit`` or
            ``interrupted`` (``Diverged`` is raised).
        """
        self.metrics = JsonlWriter(self.run_dir / "metrics.jsonl")
        spec = self.exp.train.diagnostics
        if spec is not None:
            self.diagnostics = DiagnosticsRecorder(self.run_dir / "diagnostics.jsonl", every=spec.every,
                                                   warn=self.console.warn)
        try:
            # Non-finite values are detected and reported by the loop, not by numpy warnings.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self._loop()
        finally:
            self.metrics.close()
            if self.diagnostics is not None:
                self.diagnostics.close()
                self.diagnostics = None
        if self.progress.status == "running":
            self.progress.status = "completed"
        return self.progress.status

    def _loop(self) -> None:
        """The epochs and steps of ``fit``; leaves ``progress.status`` as it ends."""
        cfg = self.exp.train
        p = self.progress
        train = self.bundle.train
        n, bs = len(train), cfg.batch_size
        batch_x = np.empty((bs, self.bundle.n_features), dtype=self.model.dtype)
        started = time.monotonic()
        try:
            while p.epoch < cfg.epochs and p.status == "running":
                order = np.random.default_rng([self.exp.seed, p.epoch]).permutation(n)
                while p.batch < self.steps_in_epoch:
                    idx = order[p.batch * bs:(p.batch + 1) * bs]
                    xb, yb = train.take(idx, out_X=batch_x)
                    t0 = time.monotonic()
                    self._step(xb, yb)
                    self._step_seconds = time.monotonic() - t0
                    p.batch += 1
                    p.step += 1
                    p.samples += len(idx)
                    if self.console.live:
                        self.console.progress(p.epoch + 1, cfg.epochs, p.batch, self.steps_in_epoch,
                                              p.loss_sum / max(p.loss_count, 1))
                    if cfg.eval_every and p.step % cfg.eval_every == 0:
                        self._evaluate(time.monotonic() - started)
                    if p.status != "running" or self._must_stop():
                        break
                    # The last step of an epoch is saved after the epoch's evaluation, so a
                    # checkpoint never precedes a metrics record of its own step.
                    if p.batch < self.steps_in_epoch and self._checkpoint_due(epoch_end=False):
                        self.save_checkpoint()
                else:
                    p.epoch += 1
                    p.batch = 0
                    if not cfg.eval_every:
                        self._evaluate(time.monotonic() - started)
                    if p.status == "running" and self._checkpoint_due(epoch_end=True):
                        self.save_checkpoint()
                    continue
                break
        finally:
            p.train_seconds += time.monotonic() - started

    def _step(self, xb, yb) -> None:
        """Forward, loss, backward and update on one mini-batch."""
        p = self.progress
        self.optimizer.lr = self.lr_at(p.step)
        diag = self.diagnostics
        if diag is not None and not diag.due(p.step + 1):
            diag = None
        trace_f, trace_b = ([], []) if diag is not None else (None, None)
        for array, saved in self._buffers_before:
            np.copyto(saved, array)
        scores = self.model.forward(xb, training=True, trace=trace_f)
        loss, dscores = self.loss_fn(scores, yb)
        if not math.isfinite(loss):
            self._nonfinite(xb, yb, f"loss is {loss} ({find_nonfinite(self.model, xb)})")
            return
        # Nothing reads the input's gradient in training; diagnostics record it.
        self.model.backward(dscores, trace=trace_b, input_grad=trace_b is not None)
        norm = grad_norm(self._grads)  # finite only if every gradient entry is
        bad = find_nonfinite_grad(self.model) if not math.isfinite(norm) else None
        if bad is not None:
            self._nonfinite(xb, yb, f"the gradient of {bad} is not finite (loss {loss:.6g})")
            return
        if self.exp.train.grad_clip is not None:
            clip_grad_norm(self._grads, self.exp.train.grad_clip, norm=norm)
        if diag is not None:
            diag.before_update(self.model)
        self.optimizer.step()
        if diag is not None:
            diag.after_update(p.step + 1, p.epoch + 1, self.model, trace_f, trace_b, self.optimizer.lr)
        p.loss_sum += loss
        p.loss_count += 1

    def _nonfinite(self, xb, yb, problem: str) -> None:
        """A batch whose loss or gradient is not finite: skip it (within the limit) or stop."""
        p = self.progress
        p.skipped += 1
        for array, saved in self._buffers_before:
            np.copyto(array, saved)
        replay = self.run_dir / "divergence" / f"step-{p.step:09d}.npz"
        replay.parent.mkdir(exist_ok=True)
        atomic_save_npz(replay, {"X": xb, "y": yb})
        message = (f"epoch {p.epoch + 1}, step {p.step}: {problem}; "
                   f"batch saved to {replay.relative_to(self.run_dir)}")
        if p.skipped > self.exp.train.divergence.skip_batches:
            raise Diverged(message, p)
        self.console.warn(f"skipping a non-finite batch: {message}")

    def _evaluate(self, seconds_this_run: float) -> None:
        """Evaluate, log a metrics record and apply early stopping."""
        t0 = time.monotonic()
        p, cfg = self.progress, self.exp.train
        record = {"epoch": p.epoch if p.batch == 0 else p.epoch + 1, "step": p.step}
        if p.loss_count:
            record["train_loss"] = p.loss_sum / p.loss_count
        if self.bundle.val is not None:
            val = evaluate(self.model, self.loss_fn, self.bundle.val, self.classification)
            record.update((f"val_{k}", v) for k, v in val.items())
        seconds = p.train_seconds + seconds_this_run
        record.update(lr=self.optimizer.lr, seconds=round(seconds, 3),
                      samples_per_second=round(p.samples / seconds, 1) if seconds > 0 else None)
        self.metrics.write(record)
        self.console.record(record, cfg.epochs, per_epoch=not cfg.eval_every)
        p.loss_sum, p.loss_count = 0.0, 0
        p.evals += 1
        self._track_best(record)
        self._eval_seconds = time.monotonic() - t0

    def best_metric(self) -> str:
        """The metric that picks best.npz: early stopping's, else val_loss, else train_loss."""
        stopping = self.exp.train.early_stopping
        if stopping is not None:
            return stopping.metric
        return "val_loss" if self.bundle.val is not None else "train_loss"

    def _track_best(self, record: dict) -> None:
        """Save best.npz when the best metric improves; count evaluations for early stopping."""
        metric, stopping = self.best_metric(), self.exp.train.early_stopping
        if metric not in record:
            return
        p = self.progress
        value = record[metric]
        sign = -1.0 if higher_is_better(metric) else 1.0
        min_delta = stopping.min_delta if stopping is not None else 0.0
        if p.best_value is None or sign * (p.best_value - value) > min_delta:
            p.best_value, p.best_epoch, p.best_step = value, record["epoch"], p.step
            p.evals_since_best = 0
            arrays = self.checkpoint_arrays()
            if stopping is not None:
                self.best_state = {k: v for k, v in arrays.items() if k.startswith("model/")}
            self.store.save_best(arrays, self.checkpoint_meta())
        else:
            p.evals_since_best += 1
            if stopping is not None and p.evals_since_best >= stopping.patience:
                p.status = "early_stopped"

    def _checkpoint_due(self, epoch_end: bool) -> bool:
        spec, p = self.exp.train.checkpoint, self.progress
        if epoch_end and spec.every_epochs and p.epoch % spec.every_epochs == 0:
            return True
        if spec.every_steps and p.step % spec.every_steps == 0:
            return True
        return bool(spec.every_seconds) and time.monotonic() - self._last_checkpoint >= spec.every_seconds

    def _must_stop(self) -> bool:
        """A signal arrived, or the next step would not end (with its checkpoint) in time."""
        p = self.progress
        if self.stop_reason is not None:
            p.status = "interrupted"
        elif self.deadline is not None:
            reserve = 3 * self._step_seconds + 2 * self._checkpoint_seconds + self._eval_seconds + 0.2
            if time.monotonic() + reserve >= self.deadline:
                p.status = "time_limit"
        if p.status in ("interrupted", "time_limit"):
            self.save_checkpoint()
            return True
        return False

    # --- the end -----------------------------------------------------------------

    def restore_best(self) -> None:
        """Put the best weights back (early stopping); a no-op without them."""
        if self.exp.train.early_stopping is not None and self.best_state is not None:
            restore_arrays(self.model, self.best_state)

    def final_metrics(self) -> dict:
        """Loss (and accuracy) of the current weights on every split there is."""
        out = {}
        for name in ("train", "val", "test"):
            split = getattr(self.bundle, name)
            if split is not None and len(split):
                metrics = evaluate(self.model, self.loss_fn, split, self.classification)
                out.update((f"{name}_{k}", v) for k, v in metrics.items())
        return out
