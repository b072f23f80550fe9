"""The sweep process: decides which trials run, hands them to an executor, records
every state change in the journal and stops cleanly.

Each trial is started with ``--resume`` semantics on its own folder, so the same code
path runs a new trial, continues an interrupted one and confirms one that finished
before the journal heard of it. A failure of the machinery (a worker process that died,
a lost Dask worker, a folder still locked by a trial running elsewhere) requeues the
trial, up to ``MACHINERY_ATTEMPTS`` times; a trial's own failure (divergence, data it
cannot take, a bug) is recorded and not retried. A trial whose folder is locked is most
likely still running in a worker that outlived an earlier sweep process (such trials
stop once the sweep's heartbeat stops): it is retried for longer, at growing intervals.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from pathlib import Path

from nnback.errors import ConfigError
from nnback.sweep.journal import DONE, Journal
from nnback.sweep.plan import Trial, make_trial
from nnback.sweep.spec import SweepSpec, check_params, set_args
from nnback.sweep.trial import (
    HEARTBEAT,
    HEARTBEAT_SECONDS,
    STOP_ALL,
    STOP_DIR,
    metric_history,
)

MACHINERY_ATTEMPTS = 3
RETRY_DELAY_SECONDS = 1.0
LOCKED_ATTEMPTS = 10  # with delays doubling from 1 s up to 30 s: about 2.5 minutes in all
LOCKED_MAX_DELAY_SECONDS = 30.0
POLL_SECONDS = 0.2
PRUNE_POLL_SECONDS = 0.5


@dataclasses.dataclass
class Running:
    trial: Trial
    attempt: int
    prune_requested: bool = False


class Coordinator:
    """Runs the trials of one sweep invocation.

    Args:
        spec: the sweep.
        base: the resolved base experiment (as in the folder's ``base.yaml``).
        folder: the sweep folder (locked by the caller), with ``base.yaml`` written.
        trials: grid/random trials still to run, in index order (empty for tpe).
        budget: for tpe, trials to start in all (counting those in the journal).
        study: a ``search.Study`` for tpe or pruning, else None.
        executor: a local or Dask executor.
        journal: the open journal.
        display: progress output (``started``/``finished`` per trial).
        options: ``fail_fast``, ``force``, ``deadline`` (monotonic seconds or None),
            ``trial_max_time``.
    """

    def __init__(self, spec: SweepSpec, base: dict, folder: Path, trials: list[Trial], budget: int, study,
                 executor, journal: Journal, display, *, fail_fast: bool, force: bool, deadline: float | None,
                 trial_max_time: str | None):
        self.spec, self.base, self.folder, self.study = spec, base, folder, study
        self.executor, self.journal, self.display = executor, journal, display
        self.queue = collections.deque(trials)
        self.budget = budget
        self.fail_fast, self.force, self.deadline = fail_fast, force, deadline
        self.trial_max_time = trial_max_time
        self.running: dict[str, Running] = {}
        self.retries: list[tuple[float, Trial, int]] = []  # (due, trial, attempt)
        self.stop_reason: str | None = None  # SIGINT, SIGTERM, time_limit, failed
        self._stop_written = False
        self._next_prune_poll = 0.0
        self._next_heartbeat = 0.0
        self.cwd = os.getcwd()

    def request_stop(self, reason: str) -> None:
        """No new trials; running ones checkpoint and stop (signal handlers call this)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def run(self) -> str | None:
        """Run until every trial ended or a stop; returns the stop reason, None if none."""
        while True:
            self._heartbeat()
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self.request_stop("time_limit")
            if self.stop_reason is not None:
                self._write_stop_marker()
            else:
                self._start_what_fits()
            if not self.running and (self.stop_reason is not None or not self._work_left()):
                return self.stop_reason
            results = self.executor.wait(POLL_SECONDS) if self.running else []
            if not self.running:
                time.sleep(POLL_SECONDS)  # only retries waiting for their delay
            for task, result in results:
                self._finish(task, result)
            if self.study is not None and self.spec.prune is not None:
                self._poll_pruning()

    # --- starting ------------------------------------------------------------------

    def _work_left(self) -> bool:
        return bool(self.queue or self.retries or self._tpe_budget_left())

    def _tpe_budget_left(self) -> bool:
        return self.spec.method == "tpe" and len(self.journal.states) < self.budget

    def _start_what_fits(self) -> None:
        if not self._work_left():
            return
        free = self.executor.free_slots
        while free > 0 and self.stop_reason is None:
            picked = self._next()
            if picked is None:
                return
            trial, attempt = picked
            if self._start(trial, attempt):
                free -= 1

    def _next(self) -> tuple[Trial, int] | None:
        now = time.monotonic()
        for item in self.retries:
            if item[0] <= now:
                self.retries.remove(item)
                return item[1], item[2]
        if self.queue:
            return self.queue.popleft(), 1
        if self._tpe_budget_left():
            index = 1 + max((s.trial.get("index", -1) for s in self.journal.states.values()), default=-1)
            return make_trial(self.spec, index, self.study.ask(), 0), 1
        return None

    def _start(self, trial: Trial, attempt: int) -> bool:
        """Journal and submit one trial; False if the experiment rejects its parameters."""
        self.journal.append({**trial.record(), "state": "started", "attempt": attempt,
                             "executor": self.executor.name})
        if self.study is not None:
            self.study.start(trial.id, trial.params)
        try:
            check_params(self.base, trial.params, f"trial {trial.id}")
        except ConfigError as exc:
            self._record_failure(trial, str(exc), "trial")
            return False
        _remove(self.folder / STOP_DIR / trial.id)
        overrides = set_args(trial.params)
        if "seed" not in trial.params:
            overrides.append(f"seed={trial.seed}")
        overrides.append(f"name={self.spec.name}")  # one experiment: `nnback runs` compares the trials
        task = {"trial": trial.id, "attempt": attempt, "config": str(self.folder / "base.yaml"),
                "overrides": overrides, "out": str(self.folder / "trials" / trial.id),
                "max_time": self.trial_max_time, "force": self.force, "cwd": self.cwd,
                "metric": self.spec.metric, "maximise": self.spec.maximise,
                "sweep_dir": str(self.folder), "parent_pid": None}
        self.running[trial.id] = Running(trial, attempt)
        self.executor.submit(task)
        self.display.started(trial)
        return True

    # --- ending ------------------------------------------------------------------

    def _finish(self, task: dict, result: dict) -> None:
        run = self.running.pop(task["trial"])
        trial = run.trial
        _remove(self.folder / STOP_DIR / trial.id)
        facts = {k: result[k] for k in ("seconds", "train_seconds", "threads", "host", "pid", "exit_code")
                 if result.get(k) is not None}
        outcome = result["outcome"]
        if outcome == "machinery":
            self._machinery_failure(run, result["message"], facts, locked=result.get("locked", False))
        elif outcome == "failed":
            self._record_failure(trial, result["message"], "trial", facts)
        elif result["status"] == "interrupted" and not run.prune_requested:
            if self.stop_reason is None:  # stopped by someone else: run it again
                self._machinery_failure(run, "the trial was stopped by a signal", facts)
            else:
                self._record(trial, "interrupted", facts)
        else:
            state = "pruned" if result["status"] == "interrupted" else result["status"]
            self._record(trial, state, {"score": result["score"], "epoch": result["epoch"], **facts})

    def _machinery_failure(self, run: Running, message: str, facts: dict, locked: bool = False) -> None:
        attempts, delay = MACHINERY_ATTEMPTS, RETRY_DELAY_SECONDS
        if locked:
            attempts = LOCKED_ATTEMPTS
            delay = min(LOCKED_MAX_DELAY_SECONDS, RETRY_DELAY_SECONDS * 2 ** (run.attempt - 1))
        if self.stop_reason is not None:
            self._record(run.trial, "interrupted", {"message": message, **facts})
        elif run.attempt < attempts:
            self.journal.append({"trial": run.trial.id, "state": "requeued", "message": message, **facts})
            if self.study is not None:
                self.study.end(run.trial.id, None, None)
            self.retries.append((time.monotonic() + delay, run.trial, run.attempt + 1))
            self.display.note(f"trial {run.trial.id}: {message}; requeued")
        else:
            self._record_failure(run.trial, f"{message} (after {run.attempt} attempts)", "machinery", facts)

    def _record_failure(self, trial: Trial, message: str, kind: str, facts: dict | None = None) -> None:
        self._record(trial, "failed", {"message": message, "kind": kind, **(facts or {})})
        if self.fail_fast:
            self.request_stop("failed")

    def _record(self, trial: Trial, state: str, fields: dict) -> None:
        self.journal.append({"trial": trial.id, "state": state, **fields})
        if self.study is not None:
            self.study.end(trial.id, state if state in DONE else None, fields.get("score"))
        self.display.finished(trial, self.journal.states[trial.id], self.journal.states)

    # --- stopping and pruning ------------------------------------------------------

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if now >= self._next_heartbeat:
            (self.folder / HEARTBEAT).touch()
            self._next_heartbeat = now + HEARTBEAT_SECONDS

    def _write_stop_marker(self) -> None:
        if not self._stop_written:
            _touch(self.folder / STOP_DIR / STOP_ALL)
            self._stop_written = True

    def _poll_pruning(self) -> None:
        now = time.monotonic()
        if now < self._next_prune_poll:
            return
        self._next_prune_poll = now + PRUNE_POLL_SECONDS
        for trial_id, run in self.running.items():
            if run.prune_requested:
                continue
            history = metric_history(self.folder / "trials" / trial_id, self.spec.metric)
            if self.study.should_prune(trial_id, history):
                run.prune_requested = True
                _touch(self.folder / STOP_DIR / trial_id)


def clear_stop_markers(folder: Path) -> None:
    """Remove the stop requests a previous run of the sweep left behind."""
    stop_dir = folder / STOP_DIR
    if stop_dir.is_dir():
        for marker in stop_dir.iterdir():
            _remove(marker)


def _touch(path: Path) -> None:
    path.parent.mkdir(exist_ok=True)
    path.touch()


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
