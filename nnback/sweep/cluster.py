"""The Dask executor: trials as tasks on a Dask distributed cluster.

``--scheduler tcp://host:8786`` connects to a running cluster; ``--scheduler local:N``
starts a LocalCluster of N single-threaded worker processes bound to 127.0.0.1. Each
submission gets its own key (trial id, attempt and a token of this sweep process), is
never merged with another (``pure=False``) and at most as many are in flight as the
cluster has worker threads, so every trial has a worker process to itself. A worker that
dies mid-trial makes the scheduler run the task again elsewhere; the trial then resumes
from its own last checkpoint. The journal in the sweep folder, not the scheduler, says
what is done.
"""

from __future__ import annotations

import uuid

from nnback.errors import NnbackError
from nnback.sweep.trial import check_worker, run_trial

_WORKER_WAIT_SECONDS = 60


class DaskExecutor:
    """Runs trials on a Dask cluster.

    Args:
        address: ``tcp://host:port`` of a scheduler, or ``local:N``.

    Raises:
        NnbackError: Dask is not installed, the scheduler cannot be reached, or no
            worker joined within a minute.
    """

    name = "dask"

    def __init__(self, address: str):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise NnbackError('--scheduler needs Dask: pip install -e ".[distributed]"') from None
        self._cluster = None
        self._futures: dict = {}  # future -> task
        self._token = uuid.uuid4().hex[:8]
        try:
            if address.startswith("local:"):
                n = _local_workers(address)
                self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                             host="127.0.0.1", dashboard_address=":0")
                self.client = Client(self._cluster)
            else:
                self.client = Client(address, timeout="20s")
            self.client.wait_for_workers(1, timeout=_WORKER_WAIT_SECONDS)
        except (OSError, TimeoutError) as exc:
            self.close()
            raise NnbackError(f"--scheduler {address}: {exc}") from None

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def free_slots(self) -> int:
        return max(0, sum(self.client.nthreads().values()) - len(self._futures))

    def check_workers(self, sweep_dir: str, cwd: str, config: str) -> None:
        """Every worker can import nnback, write the sweep folder and read the data.

        Raises:
            NnbackError: ``"worker tcp://10.0.0.5:40123: /shared/sweeps/x: not found"``.
        """
        try:
            answers = self.client.run(check_worker, sweep_dir, cwd, config)
        except Exception as exc:  # the check cannot even load there: nnback missing or another version
            reason = " ".join(str(exc).split())
            raise NnbackError(f"a Dask worker cannot run nnback's sweep code ({reason}); "
                              f"install this nnback on every worker") from None
        for worker, problem in sorted(answers.items()):
            if problem:
                raise NnbackError(f"worker {worker}: {problem}")

    def submit(self, task: dict) -> None:
        key = f"nnback-trial-{task['trial']}-{task['attempt']}-{self._token}"
        future = self.client.submit(run_trial, task, key=key, pure=False)
        self._futures[future] = task

    def wait(self, timeout: float) -> list[tuple[dict, dict]]:
        """Results finished within ``timeout`` seconds, as ``(task, result)`` pairs; a task
        Dask gave up on (a worker died too often, the scheduler lost it) is reported as a
        machinery failure."""
        from distributed import wait

        if not self._futures:
            return []
        try:
            done, _ = wait(list(self._futures), timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return []
        out = []
        for future in done:
            task = self._futures.pop(future)
            if future.status == "finished":
                result = future.result()
            else:
                exc = future.exception() if future.status == "error" else None
                reason = f"{type(exc).__name__}: {exc}" if exc is not None else f"task {future.status}"
                result = {"trial": task["trial"], "attempt": task["attempt"], "outcome": "machinery",
                          "message": f"Dask: {reason}"}
            future.release()
            out.append((task, result))
        return out

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self._cluster is not None:
            self._cluster.close()


def _local_workers(address: str) -> int:
    text = address.removeprefix("local:")
    if not text.isdigit() or int(text) < 1:
        raise NnbackError(f"--scheduler {address}: expected local:N with N >= 1 workers")
    return int(text)
