"""``nnback train``: from a config file to a finished (or cleanly stopped) run folder.

The order matters for batch jobs: everything that can fail because of the user's
input (config, data, an existing or unwritable folder, a held lock, a full disk) fails
before the first step, and nothing already saved is ever overwritten by a broken file.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shlex
import signal
import threading
import time
from pathlib import Path

import yaml

from nnback.config import load_config
from nnback.config.diff import differing_keys
from nnback.config.loader import read_saved_config
from nnback.config.timeparse import parse_duration
from nnback.errors import (
    EXIT_OK,
    EXIT_SIGHUP,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_TIME_LIMIT,
    CheckpointError,
    ConfigError,
    NnbackError,
)
from nnback.runfolder.atomic import atomic_write_json, atomic_write_text, remove_file, remove_temp_files
from nnback.runfolder.checkpoint import load_checkpoint, save_checkpoint
from nnback.runfolder.jsonl import read_json, read_jsonl, truncate_after
from nnback.runfolder.lock import RunLock
from nnback.runfolder.preflight import check_free_space, check_no_links, check_writable, path_error
from nnback.runfolder.snapshot import model_arrays, run_meta, versions
from nnback.train.divergence import Diverged
from nnback.train.plan import batch_rows, load_training_data
from nnback.train.threads import blas_threads, choose_threads
from nnback.train.trainer import Trainer

DONE = ("completed", "early_stopped")
# What a run writes into its folder (besides the lock), and nothing else there is read.
RUN_FILES = ("config.yaml", "metrics.jsonl", "diagnostics.jsonl", "summary.json", "model.npz",
             "checkpoints", "divergence")
# The signals that stop a run cleanly, and the exit code of each (128 + its number).
STOP_SIGNALS = {signal.SIGHUP: ("SIGHUP", EXIT_SIGHUP), signal.SIGINT: ("SIGINT", EXIT_SIGINT),
                signal.SIGTERM: ("SIGTERM", EXIT_SIGTERM)}


def train(config: str | Path, *, overrides=(), out: str | Path | None = None, resume: bool = False,
          force: bool = False, max_time: str | None = None, skip_if_done: bool = False,
          threads: int | None = None, console, stop: threading.Event | None = None) -> int:
    """Run ``nnback train``; returns the process exit code.

    ``stop``, set from another thread, stops training like SIGTERM (checkpoint, exit 143);
    it is how a sweep stops a trial that runs outside the main thread.

    Raises:
        NnbackError: bad config or data, a locked or unwritable folder (before training).
    """
    exp = load_config(config, overrides, names_folder=out is None)
    source = str(config)
    resolved = exp.model_dump(mode="json")
    if out is None and (resume or skip_if_done):
        raise ConfigError("--resume and --skip-if-done need a fixed run folder: add --out DIR")
    run_dir = Path(out) if out is not None else None
    if run_dir is not None and skip_if_done and _is_done(run_dir, resolved):  # without loading data
        console.info(f"{run_dir}: already holds a completed run of this config; nothing to do")
        return EXIT_OK
    budget = _budget(max_time, exp.train.max_time)
    started = time.monotonic()
    bundle = load_training_data(exp, source)
    trainer = Trainer(exp, bundle, console, source, deadline=started + budget if budget is not None else None)
    run_dir = run_dir if run_dir is not None else _new_run_dir(exp)
    check_writable(run_dir)
    with RunLock(run_dir):
        if skip_if_done and _is_done(run_dir, resolved):  # finished while we waited for the lock
            console.info(f"{run_dir}: already holds a completed run of this config; nothing to do")
            return EXIT_OK
        check_no_links(run_dir, RUN_FILES)
        _check_reusable(run_dir, resolved, resume, force, console)
        remove_temp_files(run_dir)
        remove_temp_files(run_dir / "checkpoints")
        trainer.open(run_dir)
        resume_command = _resume_command(config, overrides, run_dir, max_time)
        state_bytes = sum(a.nbytes for a in trainer.state.arrays().values())
        check_free_space(run_dir, (exp.train.checkpoint.keep + 4) * state_bytes + (1 << 20))
        if resume and _resume(trainer, console):
            return (_finish(trainer, trainer.progress.status, resume_command)
                    if _outputs_missing(run_dir) else EXIT_OK)
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
        count = threads or exp.train.threads or trainer.state.threads or choose_threads(
            trainer.model, batch_rows(exp.train.batch_size, len(bundle.train)))
        trainer.state.threads = count
        try:
            with blas_threads(count):
                with _stop_on_signals(trainer, stop):
                    console.info(f"run folder {run_dir}  ({trainer.model.num_parameters():,} parameters, "
                                 f"{len(bundle.train)} training samples, {count} BLAS "
                                 f"thread{'s' if count > 1 else ''})")
                    status = trainer.fit()
                return _finish(trainer, status, resume_command)
        except Diverged as exc:
            _write_summary(trainer, "diverged", exc.exit_code, error=str(exc))
            raise


def _budget(max_time: str | None, configured: str | None) -> float | None:
    """Seconds of the --max-time option, else of ``train.max_time``; None for no limit."""
    if max_time is None:
        return parse_duration(configured) if configured else None
    try:
        return parse_duration(max_time)
    except ValueError as exc:
        raise ConfigError(f"--max-time: {exc}") from None


def _outputs_missing(run_dir: Path) -> bool:
    """A finished run killed before writing model.npz and summary.json."""
    summary = _read_summary(run_dir)
    return not (run_dir / "model.npz").exists() or summary is None or summary.get("status") not in DONE


def _resume(trainer: Trainer, console) -> bool:
    """Load the newest good checkpoint; True if that run was already finished."""
    logs = [trainer.run_dir / "metrics.jsonl", trainer.run_dir / "diagnostics.jsonl"]
    found = trainer.store.load_latest()
    if found is None:
        console.info("no checkpoint found; starting fresh")
        for log in logs:
            truncate_after(log, 0)  # records of a run killed before its first checkpoint
        return False
    arrays, meta, path, _ = found
    for line in found.warnings():
        console.warn(line)
    try:
        trainer.restore(arrays, meta, _load_best(trainer.store, meta, console))
    except (KeyError, ValueError) as exc:  # a config changed under --force
        raise ConfigError(f"{path}: does not fit this config ({exc.args[0]}); "
                          f"resume with the saved config or choose another --out") from None
    p = trainer.progress
    if p.best_value is not None and trainer.best_weights is None:
        console.warn(f"the best weights so far (epoch {p.best_epoch}) are lost; the best is "
                     f"tracked again from this checkpoint on")
        p.best_value, p.best_epoch, p.best_step, p.evals_since_best = None, 0, 0, 0
    if p.status in DONE:
        console.info(f"{trainer.run_dir}: the run is already {p.status}")
        return True
    for log in logs:
        truncate_after(log, p.step)
    p.status = "running"
    console.info(f"resuming from {path} at epoch {p.epoch + 1}, step {p.step}")
    return False


def _resume_command(config, overrides, run_dir: Path, max_time: str | None) -> str:
    """The exact shell command that continues this run."""
    words = ["nnback", "train", str(config)]
    for override in overrides:
        words += ["--set", override]
    words += ["--out", str(run_dir), "--resume"]
    if max_time is not None:
        words += ["--max-time", max_time]
    return shlex.join(words)


def _load_best(store, meta: dict, console) -> tuple | None:
    """best.npz, or if it is damaged the step checkpoint written with the same weights
    (saved again as best.npz); None if neither can be read."""
    try:
        return store.load_best()
    except CheckpointError as exc:
        damaged = str(exc)
    best_step = meta["progress"]["best_step"]
    try:
        found = load_checkpoint(store.step_path(best_step), follow_links=False)
    except CheckpointError:
        console.warn(f"{damaged}; ignored")
        return None
    console.warn(f"{damaged}; restored from {store.step_path(best_step)}, saved at the same step")
    store.save_best(*found)
    return found


def _finish(trainer: Trainer, status: str, resume_command: str) -> int:
    """Write the final weights, checkpoint and summary; return the exit code.

    Args:
        resume_command: printed after a stop, for the user to continue the run.
    """
    if status in DONE:
        p = trainer.progress
        if status == "early_stopped":
            stopping = trainer.exp.train.early_stopping
            trainer.console.info(
                f"early stopping at epoch {p.epoch if p.batch == 0 else p.epoch + 1}: "
                f"{stopping.metric} did not improve for {stopping.patience} evaluations")
        if trainer.restore_best():
            trainer.console.info(f"keeping the weights of epoch {p.best_epoch}, step {p.best_step} "
                                 f"(best {trainer.best_metric()} {p.best_value:.4f})")
        final = trainer.final_metrics()
        trainer.progress.status = status
        trainer.save_checkpoint()
        save_checkpoint(trainer.run_dir / "model.npz", model_arrays(trainer.model, trainer.bundle),
                        run_meta(trainer.exp, trainer.bundle))
        _write_summary(trainer, status, EXIT_OK, final=final)
        trainer.console.info("done: " + " ".join(f"{k} {v:.4f}" for k, v in final.items()))
        return EXIT_OK
    if status == "time_limit":
        code = EXIT_TIME_LIMIT
    else:
        code = next(code for name, code in STOP_SIGNALS.values() if name == trainer.stop_reason)
    _write_summary(trainer, status, code)
    trainer.console.info(f"stopped ({status}) at epoch {trainer.progress.epoch + 1}, "
                         f"step {trainer.progress.step}; continue with: {resume_command}")
    return code


def _write_summary(trainer: Trainer, status: str, exit_code: int, final: dict | None = None,
                   error: str | None = None) -> None:
    p = trainer.progress
    summary = {
        "name": trainer.exp.name,
        "status": status,
        "exit_code": exit_code,
        "epochs": p.epoch,
        "steps": p.step,
        "best_epoch": p.best_epoch or None,
        "best": {trainer.best_metric(): p.best_value} if p.best_value is not None else {},
        "final": final or {},
        "last": _last_record(trainer.run_dir / "metrics.jsonl"),
        "wall_seconds": round(p.train_seconds, 3),
        "samples_per_second": round(p.samples / p.train_seconds, 1) if p.train_seconds else None,
        "skipped_batches": p.skipped,
        "blas_threads": trainer.state.threads,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    if error:
        summary["error"] = error
    atomic_write_json(trainer.run_dir / "summary.json", summary)


def _last_record(path: Path) -> dict:
    records = read_jsonl(path, missing_ok=True)
    return records[-1] if records else {}


@contextlib.contextmanager
def _stop_on_signals(trainer: Trainer, stop: threading.Event | None):
    """SIGTERM, SIGINT and SIGHUP (a closed terminal; main thread only) or ``stop`` ask
    the trainer to stop after the current step; a second signal kills."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if in_main else {}

    def handler(signum, frame):
        if trainer.stop_reason is not None:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        trainer.stop_reason = STOP_SIGNALS[signum][0]

    for sig in previous:
        signal.signal(sig, handler)
    finished = threading.Event()
    watcher = None
    if stop is not None:
        watcher = threading.Thread(target=_watch_stop, args=(stop, finished, trainer), daemon=True)
        watcher.start()
    try:
        yield
    finally:
        finished.set()
        if watcher is not None:
            watcher.join()
        for sig, old in previous.items():
            signal.signal(sig, old)


def _watch_stop(stop: threading.Event, finished: threading.Event, trainer: Trainer) -> None:
    while not finished.is_set():
        if stop.wait(0.05):
            trainer.stop_reason = trainer.stop_reason or "SIGTERM"
            return


def _new_run_dir(exp) -> Path:
    """``<output.dir>/<name>/<timestamp>``, created now so it is never reused."""
    parent = Path(exp.output.dir) / exp.name
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        candidate = parent / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            raise path_error(candidate, exc) from None
    raise NnbackError(f"{parent}: too many runs started in the same second")


def _saved_config(run_dir: Path) -> dict | None:
    path = run_dir / "config.yaml"
    return read_saved_config(path) if path.exists() else None


def _read_summary(run_dir: Path) -> dict | None:
    try:
        return read_json(run_dir / "summary.json")
    except NnbackError:
        return None


def _is_done(run_dir: Path, resolved: dict) -> bool:
    """Whether ``run_dir`` holds a finished run of this config (read through no link)."""
    check_no_links(run_dir, RUN_FILES)
    summary = _read_summary(run_dir)
    saved = _saved_config(run_dir)
    return (summary is not None and summary.get("status") in DONE and saved is not None
            and not differing_keys([saved, resolved]))


def _started_files(run_dir: Path) -> list[str]:
    """The files in ``run_dir`` that show a run took steps there: any checkpoint, a
    metrics or diagnostics record, a summary, saved weights or a diverged batch."""
    found = []
    for name in RUN_FILES[1:]:
        path = run_dir / name
        if path.is_dir():
            if any(path.iterdir()):
                found.append(name)
        elif path.exists() and (path.suffix != ".jsonl" or path.stat().st_size > 0):
            found.append(name)
    return found


def _check_reusable(run_dir: Path, resolved: dict, resume: bool, force: bool, console) -> None:
    """--out on a folder that holds a run needs --resume, and the same config.

    Without --resume, a folder whose run never took a step (a config.yaml and empty logs
    left by a run that failed at its start) is cleared and used; any other run file
    (someone else's metrics.jsonl, checkpoints) refuses the folder, so nothing of another
    run is ever mixed into this one.
    """
    saved = _saved_config(run_dir)
    if not resume:
        started = _started_files(run_dir)
        if started and saved is not None:
            raise ConfigError(f"{run_dir}: already holds a run; add --resume to continue it, "
                              f"or choose another --out")
        if started:
            raise ConfigError(f"{run_dir}: holds {', '.join(started)} of another run; "
                              f"remove them or choose another --out")
        if saved is not None:
            console.info(f"{run_dir}: the run there never took a step; starting it afresh")
        for name in RUN_FILES:
            path = run_dir / name
            if path.is_dir():
                path.rmdir()  # empty, or it would be listed as started
            else:
                remove_file(path)
        return
    if saved is None:
        return
    diff = differing_keys([saved, resolved])
    if diff and not force:
        raise ConfigError(f"{run_dir}: the saved config differs in {', '.join(diff)}; "
                          f"add --force to resume anyway" + _saved_settings_hint(run_dir))


def _saved_settings_hint(run_dir: Path) -> str:
    """The command resuming the run with its own config.yaml, if that config still loads."""
    path = run_dir / "config.yaml"
    try:
        load_config(path, names_folder=False)
    except NnbackError:
        return ""
    return f", or to continue with the saved settings: {_resume_command(path, (), run_dir, None)}"
