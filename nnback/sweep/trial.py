"""One trial, run inside a worker process (local or Dask): the normal ``nnback train``
entry point on the trial's run folder, always with ``--resume`` so that a trial that was
interrupted, or whose worker died, continues from its own last checkpoint.

The worker never writes the journal: it returns a result dict to the sweep process. A
watcher thread stops the trial (checkpoint, then return) when the sweep asks for it
with a marker file in ``DIR/stop/``, or when the sweep process is gone: a local worker
sees its parent change; a cluster worker sees the sweep's ``DIR/heartbeat`` file stop
changing (it is touched every few seconds), so a sweep killed with SIGKILL leaves no
trial running on the cluster for long.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from pathlib import Path

from nnback.errors import (
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_TIME_LIMIT,
    LockedError,
    NnbackError,
    RunIOError,
)
from nnback.runfolder.jsonl import read_json, read_jsonl

STOP_DIR = "stop"
STOP_ALL = "sweep"  # DIR/stop/sweep stops every trial; DIR/stop/<id> one trial
HEARTBEAT = "heartbeat"
HEARTBEAT_SECONDS = 5.0  # how often the sweep process touches DIR/heartbeat
HEARTBEAT_TIMEOUT = 30.0  # a heartbeat unchanged this long: the sweep process is gone
_POLL_SECONDS = 0.1


def run_trial(task: dict) -> dict:
    """Train one trial; never raises.

    Args:
        task: ``trial`` (id), ``attempt``, ``config`` (the sweep's base.yaml), ``overrides``
            (``--set`` arguments), ``out`` (the trial folder), ``max_time``, ``force``,
            ``cwd`` (where relative data paths start), ``metric``, ``maximise``,
            ``sweep_dir`` and ``parent_pid`` (the local sweep process, or None).

    Returns:
        ``outcome``: ``finished`` (with ``status``, ``score``, ``epoch``), ``failed`` (the
        trial's own failure) or ``machinery`` (worth retrying elsewhere), plus ``message``,
        ``seconds`` (the whole call), ``train_seconds``, ``threads``, ``host``, ``pid``.
    """
    started = time.monotonic()
    result = {"trial": task["trial"], "attempt": task["attempt"], "host": socket.gethostname(),
              "pid": os.getpid(), "threads": blas_threads()}
    stop = threading.Event()
    finished = threading.Event()
    watcher = threading.Thread(target=_watch, args=(task, stop, finished), daemon=True)
    watcher.start()
    try:
        with _working_dir(task["cwd"]):
            result.update(_train(task, stop))
    except LockedError as exc:
        result.update(outcome="machinery", locked=True, message=str(exc))
    except RunIOError as exc:
        result.update(outcome="machinery", message=str(exc))
    except NnbackError as exc:
        result.update(outcome="failed", message=str(exc).splitlines()[0])
    except Exception as exc:  # a trial's bug or a combination the code cannot take
        result.update(outcome="failed", message=f"{type(exc).__name__}: {exc}".splitlines()[0])
    finally:
        finished.set()
        watcher.join()
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _train(task: dict, stop: threading.Event) -> dict:
    from nnback.train.console import Console
    from nnback.train.run import train

    code = train(task["config"], overrides=task["overrides"], out=task["out"], resume=True,
                 force=task["force"], max_time=task["max_time"], console=Console("quiet"), stop=stop)
    run_dir = Path(task["out"])
    summary = read_json(run_dir / "summary.json") or {}
    status = {EXIT_OK: "completed", EXIT_TIME_LIMIT: "time_limit"}.get(code)
    if status is None and code in (EXIT_SIGINT, EXIT_SIGTERM):
        status = "interrupted"
    out = {"exit_code": code, "train_seconds": summary.get("wall_seconds"),
           "run_status": summary.get("status")}
    if status is None:
        return {**out, "outcome": "failed", "message": f"training exited with code {code}"}
    score, epoch = best_score(metric_history(run_dir, task["metric"]), task["maximise"])
    if status != "interrupted" and score is None:
        return {**out, "outcome": "failed",
                "message": f"the trial recorded no {task['metric']} (does the data have a validation split?)"}
    return {**out, "outcome": "finished", "status": status, "score": score, "epoch": epoch}


def metric_history(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    """``(epoch, value)`` of every evaluation in the run's metrics.jsonl that has ``metric``."""
    return [(r["epoch"], r[metric]) for r in read_jsonl(Path(run_dir) / "metrics.jsonl", missing_ok=True)
            if isinstance(r.get(metric), (int, float))]


def best_score(history: list[tuple[int, float]], maximise: bool) -> tuple[float | None, int | None]:
    """The best value over the evaluations and its epoch; the earliest one on ties."""
    best = None
    for epoch, value in history:
        if not math.isnan(value) and (best is None or (value > best[1] if maximise else value < best[1])):
            best = (epoch, value)
    return (best[1], best[0]) if best else (None, None)


def blas_threads() -> int:
    """Threads the BLAS library of this process uses (1 if none is loaded)."""
    from threadpoolctl import threadpool_info

    return max((pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"), default=1)


def _watch(task: dict, stop: threading.Event, finished: threading.Event) -> None:
    folder = Path(task["sweep_dir"])
    markers = (folder / STOP_DIR / STOP_ALL, folder / STOP_DIR / task["trial"])
    parent = task.get("parent_pid")
    beat = _Heartbeat(folder / HEARTBEAT) if parent is None else None
    while not finished.wait(_POLL_SECONDS):
        gone = os.getppid() != parent if parent is not None else beat.stopped()
        if gone or any(m.exists() for m in markers):
            stop.set()
            return


class _Heartbeat:
    """Watches the sweep's heartbeat file; measured on this host's clock only, so clocks
    that differ between hosts do not matter."""

    def __init__(self, path: Path):
        self.path = path
        self.seen = self._stamp()
        self.changed = time.monotonic()
        self.next_look = self.changed + HEARTBEAT_SECONDS

    def stopped(self) -> bool:
        now = time.monotonic()
        if now < self.next_look:
            return False
        self.next_look = now + HEARTBEAT_SECONDS
        stamp = self._stamp()
        if stamp != self.seen:
            self.seen, self.changed = stamp, now
        return now - self.changed > HEARTBEAT_TIMEOUT

    def _stamp(self) -> int | None:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None


@contextlib.contextmanager
def _working_dir(path: str):
    previous = os.getcwd()
    if path != previous:
        os.chdir(path)
    try:
        yield
    finally:
        if os.getcwd() != previous:
            os.chdir(previous)



def check_worker(sweep_dir: str, cwd: str, config: str) -> str | None:
    """On a cluster worker: None if it can write the sweep folder and load the data,
    else the problem, naming the path it could not see."""
    from nnback.config import load_config
    from nnback.data import load_data
    from nnback.runfolder.preflight import check_writable

    for folder, what in ((sweep_dir, "the sweep folder"), (cwd, "the sweep's working directory")):
        if not Path(folder).is_dir():
            return f"{folder}: not found ({what}; workers need a shared file system)"
    try:
        check_writable(sweep_dir)
        exp = load_config(config)
        with _working_dir(cwd):
            load_data(exp.data, seed=exp.seed, base_dir=Path(cwd))
    except NnbackError as exc:
        return str(exc).splitlines()[0]
    return None
