"""The local executor: ``--workers N`` long-lived worker processes on this machine.

Each worker is a fresh interpreter (the ``spawn`` start method: no state inherited
from the sweep process) started when the first trial is due and reused for every trial
it runs, so a trial pays no interpreter or import start-up, and a sweep with nothing
left to run (or a locked folder) starts none. BLAS threads are divided between the workers,
``cores // N`` each, fixed in the environment before NumPy loads and again with
threadpoolctl. The sweep process talks to each worker over a pipe and watches its
process sentinel, so it knows which trial a worker that dies was running.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal

from nnback.errors import NnbackError

_READY = "ready"
_START_ATTEMPTS = 3
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class _Worker:
    """One worker process, its end of the pipe and the task it is running."""

    def __init__(self, context, threads: int):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, threads), daemon=True,
                                       name="nnback-sweep-worker")
        with _environment({name: str(threads) for name in THREAD_VARIABLES}):
            self.process.start()
        child.close()
        self.ready = False  # set when the worker reports its imports done
        self.task: dict | None = None

    def check_ready(self) -> bool:
        """Read the worker's ready message if it has come; whether it has."""
        if not self.ready and self.conn.poll():
            self.ready = self.conn.recv() == _READY
        return self.ready


class LocalExecutor:
    """Runs trials on ``workers`` local processes, one trial per process at a time.

    Args:
        workers: trials at once.
        cores: cores to divide between them (default: those this process may use).
    """

    name = "local"

    def __init__(self, workers: int, cores: int | None = None):
        self.threads = max(1, (cores or usable_cores()) // workers)
        self._context = multiprocessing.get_context("spawn")
        self._count = workers
        self._workers: list[_Worker] = []  # started by the first look at free_slots
        self._failed_starts = 0

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def free_slots(self) -> int:
        """Idle workers that have finished starting (trials wait for them, not in them)."""
        if not self._workers:
            self._workers = [_Worker(self._context, self.threads) for _ in range(self._count)]
        for i, worker in enumerate(self._workers):
            if not worker.ready and worker.process.exitcode is not None:
                self._failed_starts += 1
                if self._failed_starts > _START_ATTEMPTS:
                    raise NnbackError(f"sweep worker processes die while starting (exit code "
                                      f"{worker.process.exitcode}); see the messages above")
                self._workers[i] = _Worker(self._context, self.threads)
        return sum(w.task is None and w.check_ready() for w in self._workers)

    def submit(self, task: dict) -> None:
        worker = next(w for w in self._workers if w.task is None and w.ready)
        worker.task = {**task, "parent_pid": os.getpid()}
        worker.conn.send(worker.task)

    def wait(self, timeout: float) -> list[tuple[dict, dict]]:
        """Results that arrived within ``timeout`` seconds, as ``(task, result)`` pairs; a
        worker that died is replaced and its trial reported as a machinery failure."""
        busy = [w for w in self._workers if w.task is not None]
        if not busy:
            return []
        ready = set(multiprocessing.connection.wait(
            [w.conn for w in busy] + [w.process.sentinel for w in busy], timeout))
        out = []
        for i, worker in enumerate(self._workers):
            if worker.task is None or not ({worker.conn, worker.process.sentinel} & ready):
                continue
            task, result = worker.task, _receive(worker)
            if result is None:
                worker.process.join()
                result = {"trial": task["trial"], "attempt": task["attempt"], "outcome": "machinery",
                          "message": f"worker process {worker.process.pid} died "
                                     f"(exit code {worker.process.exitcode})"}
                self._workers[i] = _Worker(self._context, self.threads)
            else:
                worker.task = None
            out.append((task, result))
        return out

    def close(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
            worker.conn.close()
        for worker in self._workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()


def _receive(worker: _Worker) -> dict | None:
    """The worker's result, or None if its process died."""
    try:
        if worker.conn.poll():
            return worker.conn.recv()
    except (EOFError, OSError):
        pass
    return None


def _serve(conn, threads: int) -> None:
    """A worker's main loop: run each task received, send back its result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches trials through train's own handler
    import numpy  # noqa: F401  (loads BLAS under the thread limits of the environment)
    from threadpoolctl import threadpool_limits

    _limits = threadpool_limits(threads)  # held for the life of the worker
    import nnback.train.run  # noqa: F401  (imported once here, not in the first trial)
    from nnback.sweep.trial import run_trial

    try:
        conn.send(_READY)
    except OSError:
        return  # the sweep ended before its first trial (a folder refused, a lock held)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        result = run_trial(task)
        try:
            conn.send(result)
        except OSError:
            return  # the sweep process is gone; the trial stopped with a checkpoint


@contextlib.contextmanager
def _environment(values: dict):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
