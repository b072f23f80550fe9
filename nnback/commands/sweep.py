"""``nnback sweep``: many trials of one experiment, on this machine or a Dask cluster.

Everything the user can get wrong (the sweep file, a parameter value, the grid size,
the options) is checked before the sweep folder exists. The folder then holds the
resolved definition, one run folder per trial, the journal, ``summary.json``,
``best.yaml`` and the ``best`` link; re-running the same command continues it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import time
from pathlib import Path

from nnback.config.timeparse import parse_duration
from nnback.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_TIME_LIMIT,
    ConfigError,
)
from nnback.sweep.folder import BASE_FILE, check_unchanged, write_definition
from nnback.sweep.journal import Journal, TrialState
from nnback.sweep.plan import Trial, grid_size, planned_trials
from nnback.sweep.spec import SweepSpec, check_params, load_sweep
from nnback.sweep.summary import build_summary, ranked, table, write_outputs

EXIT_CODES = {None: EXIT_OK, "SIGINT": EXIT_SIGINT, "SIGTERM": EXIT_SIGTERM, "time_limit": EXIT_TIME_LIMIT,
              "failed": EXIT_FAILURE}
STATUS = {None: "completed", "SIGINT": "interrupted", "SIGTERM": "interrupted", "time_limit": "time_limit",
          "failed": "failed"}


@dataclasses.dataclass
class SweepOptions:
    """The command-line options of ``nnback sweep``."""

    workers: int = 1
    scheduler: str | None = None
    out: Path | None = None
    overrides: tuple = ()
    max_trials: int | None = None
    max_time: str | None = None
    retry_failed: bool = False
    fail_fast: bool = False
    force: bool = False
    dry_run: bool = False


def run_sweep(path: str | Path, options: SweepOptions, stream=None) -> int:
    """Run (or continue) the sweep of ``path``; returns the process exit code.

    Raises:
        NnbackError: a bad sweep file or option (before any folder exists), a locked
            folder, a changed sweep without --force, a worker that cannot see the folder.
    """
    stream = stream or sys.stdout
    spec, base = load_sweep(path, options.overrides)
    if options.workers < 1:
        raise ConfigError(f"--workers: must be at least 1 (got {options.workers})")
    budget = _seconds("--max-time", options.max_time)
    trials, count = _plan(path, spec, base, options.max_trials)
    folder = options.out if options.out is not None else Path(spec.output.dir) / spec.name
    if options.dry_run:
        stream.write(_dry_run(spec, trials, count, folder))
        return EXIT_OK
    if spec.needs_optuna():
        from nnback.sweep.search import require_optuna

        require_optuna()  # a missing Optuna is a usage error, before the folder exists
    deadline = time.monotonic() + budget if budget is not None else None
    with _executor(options) as executor:  # a scheduler that cannot be reached leaves no folder
        reason, states, summary = _run_in_folder(folder, spec, base, trials, count, executor, options,
                                                 deadline, stream)
    stream.write(table(spec, states) + "\n")
    _final_line(stream, folder, summary)
    return EXIT_CODES[reason]


def _run_in_folder(folder: Path, spec: SweepSpec, base: dict, trials: list[Trial], count: int, executor,
                   options: SweepOptions, deadline: float | None, stream) -> tuple[str | None, dict, dict]:
    """Lock the folder, run what is left and write the summary.

    Returns:
        the stop reason (None: every trial ended), the states of the sweep's trials (for
        grid and random those of its plan: trials of an earlier file left out) and the
        summary.
    """
    from nnback.runfolder.lock import RunLock
    from nnback.runfolder.preflight import check_writable
    from nnback.sweep.runner import Coordinator, clear_stop_markers

    check_writable(folder)
    with RunLock(folder, "nnback sweep"):
        check_unchanged(folder, spec, base, options.force)
        write_definition(folder, spec, base)
        clear_stop_markers(folder)
        if executor.name == "dask":
            executor.check_workers(str(folder.resolve()), str(Path.cwd()),
                                   str((folder / BASE_FILE).resolve()))
        with Journal(folder) as journal:
            todo = [t for t in trials if _to_run(journal.states.get(t.id), options.retry_failed)]
            if spec.method == "tpe":
                todo = _unfinished_tpe(journal.states, options.retry_failed)
            study = _study(spec, folder, journal.states) if spec.needs_optuna() else None
            display = Display(spec, stream, count)
            coordinator = Coordinator(spec, base, folder.resolve(), todo, count, study, executor, journal,
                                      display, fail_fast=options.fail_fast, force=options.force,
                                      deadline=deadline, trial_max_time=spec.trial_max_time)
            with _stop_on_signals(coordinator):
                reason = coordinator.run()
            display.close()
        planned = {t.id for t in planned_trials(spec)} if spec.method != "tpe" else None
        states = {k: s for k, s in journal.states.items() if planned is None or k in planned}
        summary = build_summary(spec, states, STATUS[reason], count)
        write_outputs(folder, summary)
    return reason, states, summary


def _seconds(option: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


def _plan(path, spec: SweepSpec, base: dict, max_trials: int | None) -> tuple[list[Trial], int]:
    """Grid/random trials to run (checked on the experiment) and the trial count."""
    if max_trials is not None and max_trials < 1:
        raise ConfigError(f"--max-trials: must be at least 1 (got {max_trials})")
    if spec.method == "grid" and max_trials is not None and grid_size(spec) > max_trials:
        raise ConfigError(f"{path}: parameters: the grid has {grid_size(spec)} trials, more than "
                          f"--max-trials {max_trials}")
    if spec.method == "tpe":
        return [], min(spec.trials, max_trials or spec.trials)
    trials = planned_trials(spec)[:max_trials]
    seen = set()
    for trial in trials:
        key = repr(trial.params)
        if key not in seen:
            seen.add(key)
            check_params(base, trial.params, f"{path}: trial {trial.id} ({_params_text(trial.params)})")
    return trials, len(trials)


def _to_run(state: TrialState | None, retry_failed: bool) -> bool:
    if state is None:
        return True
    if state.state == "failed":
        return retry_failed
    return not state.done


def _unfinished_tpe(states: dict[str, TrialState], retry_failed: bool) -> list[Trial]:
    """tpe trials of earlier runs that did not end: resumed with the parameters they had."""
    return [Trial(s.trial["trial"], s.trial["index"], s.trial["params"], s.trial["repeat"], s.trial["seed"])
            for s in sorted(states.values(), key=lambda s: s.trial["index"])
            if _to_run(s, retry_failed)]


def _study(spec: SweepSpec, folder: Path, states: dict[str, TrialState]):
    from nnback.sweep.search import Study
    from nnback.sweep.trial import metric_history

    ended = [(s.trial["params"], s.state, s.last.get("score"),
              metric_history(folder / "trials" / s.trial["trial"], spec.metric))
             for s in sorted(states.values(), key=lambda s: s.trial["index"]) if s.done]
    return Study(spec, ended, known=len(states))


def _executor(options: SweepOptions):
    if options.scheduler is not None:
        from nnback.sweep.cluster import DaskExecutor

        return DaskExecutor(options.scheduler)
    from nnback.sweep.local import LocalExecutor

    return LocalExecutor(options.workers)


@contextlib.contextmanager
def _stop_on_signals(coordinator):
    """SIGINT/SIGTERM: no new trials, running ones checkpoint and stop; a second one kills."""
    names = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
    previous = {sig: signal.getsignal(sig) for sig in names}

    def handler(signum, frame):
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the sweep process at once
        coordinator.request_stop(names[signum])

    for sig in names:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _params_text(params: dict) -> str:
    from nnback.sweep.spec import value_text

    return " ".join(f"{k}={value_text(v)}" for k, v in params.items())


def _dry_run(spec: SweepSpec, trials: list[Trial], count: int, folder: Path) -> str:
    lines = [f"sweep {spec.name}: {count} trials ({spec.method}), metric {spec.metric}, folder {folder}"]
    if spec.method == "tpe":
        lines.append("trials are chosen by Optuna's TPE sampler as results arrive, from:")
        lines += [f"  {key}: {values if isinstance(values, list) else values.model_dump(exclude_none=True)}"
                  for key, values in spec.parameters.items()]
    else:
        lines += [f"{t.id}  seed {t.seed}  {_params_text(t.params)}" for t in trials]
    return "\n".join(lines) + "\n"


def _final_line(stream, folder: Path, summary: dict) -> None:
    counts = ", ".join(f"{n} {state}" for state, n in sorted(summary["trials"].items()))
    best = summary["best"]
    text = f"sweep {summary['status']}: {counts or 'no trials'}; folder {folder}"
    if best is not None:
        text += f"; best {best['trial']} {summary['metric']} {best['score']:.4f} (epoch {best['epoch']})"
    stream.write(text + "\n")


class Display:
    """Progress of a sweep: a redrawn status line on a terminal, else one line per trial."""

    def __init__(self, spec: SweepSpec, stream, count: int):
        self.spec, self.stream, self.count = spec, stream, count
        self.live = stream.isatty()
        self._running = 0
        self._states: dict[str, TrialState] = {}

    def started(self, trial: Trial) -> None:
        self._running += 1
        if self.live:
            self._status(self._states)

    def finished(self, trial: Trial, state: TrialState, states: dict[str, TrialState]) -> None:
        self._running -= 1
        self._states = states
        if self.live:
            self._status(states)
            return
        last = state.last
        score = f" {self.spec.metric} {last['score']:.4f} (epoch {last.get('epoch')})" \
            if isinstance(last.get("score"), float) else ""
        message = f": {last['message']}" if last.get("message") else ""
        seconds = f" {last['seconds']:.1f}s" if isinstance(last.get("seconds"), (int, float)) else ""
        params = _params_text(trial.params)
        self._write(f"trial {trial.id} {state.state}{score}{seconds}  {params}{message}\n")

    def note(self, text: str) -> None:
        self._write(("\r\033[K" if self.live else "") + text + "\n")

    def close(self) -> None:
        if self.live:
            self._write("\n")

    def _status(self, states: dict[str, TrialState]) -> None:
        done = sum(s.done for s in states.values())
        failed = sum(s.state == "failed" for s in states.values())
        best = ranked(self.spec, states)
        text = f"done {done}/{self.count}  running {self._running}  failed {failed}"
        if best:
            text += f"  best {self.spec.metric} {best[0].last['score']:.4f} ({best[0].trial['trial']})"
        self._write("\r\033[K" + text)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
