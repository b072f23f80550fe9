"""The training loop: mini-batches, evaluation, early stopping, checkpoints, stops.

Read it top to bottom: ``fit`` runs epochs, ``_run_epoch`` runs the steps of one epoch,
``_step`` trains on one mini-batch. Checks (``_stop_status``, ``_checkpoint_due``,
``_improves``) only look; every file the loop writes is written by the loop itself, in
plain sight. What a checkpoint holds, and how a run continues from one, is
``TrainingState``'s job.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from nnback.build import (
    build_loss,
    build_optimizer,
    build_schedule,
    loss_targets,
    steps_per_epoch,
)
from nnback.data.load import Split
from nnback.optim import clip_grad_norm
from nnback.runfolder.atomic import atomic_save_npz
from nnback.runfolder.checkpoint import CheckpointStore
from nnback.runfolder.jsonl import JsonlWriter
from nnback.train.diagnostics import DiagnosticsRecorder
from nnback.train.divergence import Diverged, find_nonfinite, find_nonfinite_grad
from nnback.train.evaluate import evaluate, higher_is_better
from nnback.train.plan import gather_rows, trainable_network
from nnback.train.state import Progress, TrainingState

# Statuses that end the loop with a checkpoint of where it stopped.
STOPPED = ("interrupted", "time_limit")


class Trainer:
    """Trains one experiment on one data bundle into one run folder.

    Building a Trainer builds the model (checked to train on the data in the memory left,
    see ``trainable_network``), loss, optimizer and schedule, so everything that does not
    fit the data fails here, before any folder exists; ``open(run_dir)`` then
    binds the run folder. The caller's bundle is left as it is.

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
        self.model, need = trainable_network(exp, bundle, self.rng, source)
        self.loss_fn = build_loss(exp)
        # The splits with labels as the loss wants them (the bundle's own are untouched).
        self.splits = {name: Split(split.X, loss_targets(exp, split.y, self.model.dtype),
                                   split.rows, split.preprocessor)
                       for name in ("train", "val", "test")
                       if (split := getattr(bundle, name)) is not None}
        self.optimizer = build_optimizer(exp, self.model)
        n, bs = len(bundle.train), exp.train.batch_size
        self.eval_rows = need.eval_rows
        self.steps_in_epoch = steps_per_epoch(n, bs)
        if n > bs and n % bs == 1 and any(layer.spec.batch_statistics for layer in self.model.layers):
            self.steps_in_epoch -= 1  # a batch of one sample has no batch statistics
        self.total_steps = exp.train.epochs * self.steps_in_epoch
        self.lr_at = build_schedule(exp, self.steps_in_epoch)
        # A constant rate without warm-up is the optimizer's own: nothing to set per step.
        self._scheduled = exp.schedule.type != "constant" or exp.schedule.warmup_epochs > 0
        self.state = TrainingState(exp, bundle, self.model, self.optimizer, self.rng)
        # Running statistics as they were before the current batch, restored when a
        # non-finite batch is skipped (its forward pass has already moved them).
        self._buffers_before = ([(array, array.copy()) for _, array in self.model.buffers()]
                                if exp.train.divergence.skip_batches else [])
        self._flat_grads = self.model.flat_grads  # every gradient, packed: one norm, one scaling
        self.run_dir: Path | None = None
        self.store: CheckpointStore | None = None
        self.metrics = None  # opened by fit(), after a resume has trimmed the file
        self.best_weights: dict | None = None  # kept in memory for early stopping
        self.stop_reason: str | None = None  # set by a signal handler: "SIGTERM" / "SIGINT"
        self.diagnostics = None  # a DiagnosticsRecorder while fit() runs, if configured
        self._gathered_x = None  # the reused (rows, D) buffer batches are gathered into while fit() runs
        self._clock_mark = time.monotonic()  # when progress.train_seconds was last brought up to date
        self._last_checkpoint = time.monotonic()
        self._step_seconds = 0.0
        self._checkpoint_seconds = 0.5
        self._eval_seconds = 0.0

    @property
    def progress(self) -> Progress:
        return self.state.progress

    def open(self, run_dir: Path) -> None:
        """Bind the run folder (created, locked and checked writable by the caller)."""
        self.run_dir = Path(run_dir)
        self.store = CheckpointStore(self.run_dir, keep=self.exp.train.checkpoint.keep)

    def restore(self, arrays: dict, meta: dict, best: tuple | None) -> None:
        """Continue from a checkpoint (and the best-weights checkpoint, if any)."""
        self.state.restore(arrays, meta)
        if best is not None:
            self.best_weights = TrainingState.weights(best[0])

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
        # Batches are gathered in the splits' float32; the model casts them to its dtype.
        rows = gather_rows(self.exp.train.batch_size, len(self.splits["train"]), self.bundle.n_features)
        self._gathered_x = np.empty((rows, self.bundle.n_features), dtype=np.float32)
        self._clock_mark = time.monotonic()
        p = self.progress
        try:
            # Non-finite values are detected and reported by the loop, not by numpy warnings.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                while p.status == "running" and p.epoch < self.exp.train.epochs:
                    self._run_epoch()
        finally:
            self._clock()
            self.metrics.close()
            if self.diagnostics is not None:
                self.diagnostics.close()
                self.diagnostics = None
        if p.status == "running":
            p.status = "completed"
        return p.status

    def _run_epoch(self) -> None:
        """The steps left in the current epoch, then its end: evaluation and checkpoint.

        Returns early, with ``progress.status`` set, when the run stops inside the epoch.
        """
        cfg, p, train = self.exp.train, self.progress, self.splits["train"]
        order = np.random.default_rng([self.exp.seed, p.epoch]).permutation(len(train))
        rows_left = order[p.batch * cfg.batch_size:self.steps_in_epoch * cfg.batch_size]
        for xb, yb in train.take_batches(rows_left, cfg.batch_size, out_X=self._gathered_x):
            started = time.monotonic()
            self._step(xb, yb)
            self._step_seconds = time.monotonic() - started
            p.batch += 1
            p.step += 1
            p.samples += len(xb)
            if self.console.live:
                self.console.progress(p.epoch + 1, cfg.epochs, p.batch, self.steps_in_epoch,
                                      p.loss_sum / max(p.loss_count, 1))
            if cfg.eval_every and p.step % cfg.eval_every == 0:
                self._evaluate_and_record()
            if p.status == "running":
                p.status = self._stop_status()
            if p.status != "running":
                if p.status in STOPPED:
                    self.save_checkpoint()
                return
            # The last step of an epoch is saved after the epoch's evaluation, so a
            # checkpoint never precedes a metrics record of its own step.
            if p.batch < self.steps_in_epoch and self._checkpoint_due(epoch_end=False):
                self.save_checkpoint()
        p.epoch += 1
        p.batch = 0
        if not cfg.eval_every:
            self._evaluate_and_record()
        if p.status == "running" and self._checkpoint_due(epoch_end=True):
            self.save_checkpoint()

    def _step(self, xb, yb) -> None:
        """Forward, loss, backward and update on one mini-batch."""
        p, model, grads = self.progress, self.model, self._flat_grads
        if self._scheduled:
            self.optimizer.lr = self.lr_at(p.step)
        diag = self.diagnostics
        if diag is not None and not diag.due(p.step + 1):
            diag = None
        trace_f, trace_b = ([], []) if diag is not None else (None, None)
        for array, saved in self._buffers_before:
            np.copyto(saved, array)
        scores = model.forward(xb, training=True, trace=trace_f)
        loss, dscores = self.loss_fn(scores, yb)
        if not math.isfinite(loss):
            self._nonfinite(xb, yb, f"loss is {loss} ({find_nonfinite(model, xb)})")
            return
        # Nothing reads the input's gradient in training; diagnostics record it.
        model.backward(dscores, trace=trace_b, input_grad=diag is not None)
        squares = float(grads.dot(grads))  # finite only if every gradient entry is
        bad = find_nonfinite_grad(model) if not math.isfinite(squares) else None
        if bad is not None:
            self._nonfinite(xb, yb, f"the gradient of {bad} is not finite (loss {loss:.6g})")
            return
        if self.exp.train.grad_clip is not None:
            clip_grad_norm([grads], self.exp.train.grad_clip, norm=math.sqrt(squares))
        if diag is not None:
            diag.before_update(model)
        self.optimizer.step()
        if diag is not None:
            diag.after_update(p.step + 1, p.epoch + 1, model, trace_f, trace_b, self.optimizer.lr)
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

    # --- evaluation: measure, then record, then keep the best ----------------------

    def _evaluate_and_record(self) -> None:
        """Evaluate, log the record, save best.npz on an improvement, apply early stopping."""
        t0 = time.monotonic()
        record = self._evaluate()
        self.metrics.write(record)
        self.console.record(record, self.exp.train.epochs, per_epoch=not self.exp.train.eval_every)
        p = self.progress
        p.loss_sum, p.loss_count = 0.0, 0
        p.evals += 1
        metric = self.best_metric()
        if metric in record:
            if self._improves(record[metric]):
                p.best_value, p.best_epoch, p.best_step = record[metric], record["epoch"], p.step
                p.evals_since_best = 0
                self._save_best()
            else:
                p.evals_since_best += 1
                if self._patience_exhausted():
                    p.status = "early_stopped"
        self._eval_seconds = time.monotonic() - t0

    def _evaluate(self) -> dict:
        """The metrics record of this moment: epoch, step, losses, accuracy, lr, speed."""
        p = self.progress
        record = {"epoch": p.epoch if p.batch == 0 else p.epoch + 1, "step": p.step}
        if p.loss_count:
            record["train_loss"] = p.loss_sum / p.loss_count
        if "val" in self.splits:
            val = evaluate(self.model, self.loss_fn, self.splits["val"], self.classification,
                           self.eval_rows)
            record.update((f"val_{k}", v) for k, v in val.items())
        seconds = self._clock()
        # The rate of the last step taken (the optimizer's own lr is not restored by a resume).
        record.update(lr=self.lr_at(p.step - 1), seconds=round(seconds, 3),
                      samples_per_second=round(p.samples / seconds, 1) if seconds > 0 else None)
        return record

    def best_metric(self) -> str:
        """The metric that picks best.npz: early stopping's, else val_loss, else train_loss."""
        stopping = self.exp.train.early_stopping
        if stopping is not None:
            return stopping.metric
        return "val_loss" if "val" in self.splits else "train_loss"

    def _improves(self, value: float) -> bool:
        """Whether ``value`` of the best metric beats the best so far (by ``min_delta``)."""
        best, stopping = self.progress.best_value, self.exp.train.early_stopping
        sign = -1.0 if higher_is_better(self.best_metric()) else 1.0
        min_delta = stopping.min_delta if stopping is not None else 0.0
        return best is None or sign * (best - value) > min_delta

    def _patience_exhausted(self) -> bool:
        stopping = self.exp.train.early_stopping
        return stopping is not None and self.progress.evals_since_best >= stopping.patience

    def _save_best(self) -> None:
        """Write best.npz; keep its weights in memory when early stopping will want them."""
        self._clock()
        arrays = self.state.arrays()
        if self.exp.train.early_stopping is not None:
            self.best_weights = TrainingState.weights(arrays)
        self.store.save_best(arrays, self.state.meta())

    # --- checkpoints and stops -------------------------------------------------------

    def save_checkpoint(self) -> None:
        started = time.monotonic()
        self._require_finite_weights()
        self._clock()
        self.store.save(self.progress.step, self.state.arrays(), self.state.meta())
        self._last_checkpoint = time.monotonic()
        self._checkpoint_seconds = self._last_checkpoint - started

    def _clock(self) -> float:
        """Bring ``progress.train_seconds`` (all segments of the run) up to now; return it."""
        now = time.monotonic()
        self.progress.train_seconds += now - self._clock_mark
        self._clock_mark = now
        return self.progress.train_seconds

    def _require_finite_weights(self) -> None:
        for name, param, _ in self.model.parameters():
            if not np.isfinite(param).all():
                raise Diverged(
                    f"epoch {self.progress.epoch + 1}, step {self.progress.step}: "
                    f"parameter {name} is not finite", self.progress
                )

    def _checkpoint_due(self, epoch_end: bool) -> bool:
        spec, p = self.exp.train.checkpoint, self.progress
        if epoch_end and spec.every_epochs and p.epoch % spec.every_epochs == 0:
            return True
        if spec.every_steps and p.step % spec.every_steps == 0:
            return True
        return bool(spec.every_seconds) and time.monotonic() - self._last_checkpoint >= spec.every_seconds

    def _stop_status(self) -> str:
        """``interrupted`` after a signal, ``time_limit`` when the next step would not end
        (with its checkpoint) in time, else ``running``."""
        if self.stop_reason is not None:
            return "interrupted"
        if self.deadline is not None:
            reserve = 3 * self._step_seconds + 2 * self._checkpoint_seconds + self._eval_seconds + 0.2
            if time.monotonic() + reserve >= self.deadline:
                return "time_limit"
        return "running"

    # --- the end -----------------------------------------------------------------

    def restore_best(self) -> bool:
        """Put the best weights back (early stopping); False, a no-op, without them."""
        if self.exp.train.early_stopping is None or self.best_weights is None:
            return False
        self.state.restore_weights(self.best_weights)
        return True

    def final_metrics(self) -> dict:
        """Loss (and accuracy) of the current weights on every split there is."""
        out = {}
        for name, split in self.splits.items():
            if len(split):
                metrics = evaluate(self.model, self.loss_fn, split, self.classification, self.eval_rows)
                out.update((f"{name}_{k}", v) for k, v in metrics.items())
        return out
