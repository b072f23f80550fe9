"""Shared fixtures: tiny experiment files and running the ``nnback`` command.

``write_config`` writes a small, fast experiment (a 3-class spiral, one hidden layer of
16 units, well under a second of training) with any sections changed; ``nnback`` runs
the command in a subprocess and ``nnback_start`` starts one to signal or kill;
``nnback_cli`` runs it in-process, for tests of arguments, configs and run folders
rather than of the process (signals, locks, kills, pipes). The
session-scoped ``experiment_file`` and ``nnback_in`` do the same for module fixtures, and
``completed_run`` trains a reference run once per session.

Tests that signal or kill a process must not depend on how fast it runs: ``wait_until``
waits for an observable event (a file, a line), and ``freezer`` stops processes with
SIGSTOP at a state the test chose (a trial in mid-training), so that a signal or a kill
lands there however fast the run would have ended.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

TINY_CONFIG = {
    "name": "tiny",
    "seed": 0,
    "data": {"source": "spiral", "classes": 3, "points_per_class": 50, "noise": 0.2,
             "split": {"val": 0.2}},
    "model": {"layers": [{"type": "linear", "units": 16}, "relu", {"type": "linear", "units": "auto"}]},
    "loss": "softmax_cross_entropy",
    "optimizer": {"type": "sgd", "lr": 0.5, "momentum": 0.9},
    "train": {"epochs": 20, "batch_size": 16,
              "checkpoint": {"every_epochs": None, "every_steps": 5, "every_seconds": None}},
}

# One BLAS thread per process: the machine is shared, and results stay reproducible.
_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _merged(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` applied: a nested dict merges into the dict it meets,
    unless it names another ``type`` or ``source`` (another variant): then it replaces it.
    """
    out = dict(base)
    for key, value in changes.items():
        old = out.get(key)
        if (isinstance(value, dict) and isinstance(old, dict)
                and all(value.get(tag, old.get(tag)) == old.get(tag) for tag in ("type", "source"))):
            out[key] = _merged(old, value)
        else:
            out[key] = value
    return out


@pytest.fixture(scope="session")
def experiment_file():
    """``experiment_file(path, changes=None) -> path``: write a tiny experiment there.

    ``changes`` is merged into ``TINY_CONFIG`` section by section, e.g.
    ``{"train": {"epochs": 5}}`` keeps every other ``train`` key.
    """

    def write(path: Path, changes: dict | None = None) -> Path:
        path.write_text(yaml.safe_dump(_merged(TINY_CONFIG, changes or {}), sort_keys=False),
                        encoding="utf-8")
        return path

    return write


@pytest.fixture
def write_config(tmp_path, experiment_file):
    """``write_config(changes=None, name="cfg.yaml") -> Path``: a tiny experiment in tmp_path."""

    def write(changes: dict | None = None, name: str = "cfg.yaml") -> Path:
        return experiment_file(tmp_path / name, changes)

    return write


def nnback_command(*args) -> list[str]:
    """The argument vector running ``nnback ARGS...`` with this interpreter."""
    return [sys.executable, "-m", "nnback.cli", *map(str, args)]


def invoke(*args):
    """Run ``nnback ARGS...`` in this process (typer's CliRunner); stderr is in ``output``."""
    from typer.testing import CliRunner

    from nnback.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def one_error(result, start: str) -> str:
    """The one output line of a command that failed with exit 2, checked to start with
    ``error: <start>``."""
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {start}"), result.output
    return lines[0]


def _env() -> dict:
    return {**os.environ, **_ENV}


@pytest.fixture(scope="session")
def nnback_in():
    """``nnback_in(cwd, *args, timeout=60) -> CompletedProcess``: run ``nnback`` in ``cwd``."""

    def run(cwd: Path, *args, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(nnback_command(*args), cwd=cwd, env=_env(), capture_output=True,
                              text=True, timeout=timeout)

    return run


@pytest.fixture
def nnback(tmp_path, nnback_in):
    """``nnback(*args, timeout=60) -> CompletedProcess`` run in tmp_path (text stdout/stderr)."""

    def run(*args, timeout: float = 60) -> subprocess.CompletedProcess:
        return nnback_in(tmp_path, *args, timeout=timeout)

    return run


@pytest.fixture
def nnback_cli(tmp_path, monkeypatch):
    """``nnback_cli(*args) -> CompletedProcess``: ``nnback ARGS...`` run in-process with
    typer's CliRunner, in tmp_path. An exception other than the command's exit propagates
    (a subprocess would print its traceback and exit 1)."""
    from typer.testing import CliRunner

    from nnback.cli import app

    monkeypatch.chdir(tmp_path)

    def run(*args) -> subprocess.CompletedProcess:
        result = CliRunner().invoke(app, [str(a) for a in args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def nnback_start(tmp_path):
    """``nnback_start(*args, cwd=tmp_path) -> Popen`` with piped text stdout/stderr.

    Every process still running when the test ends is killed.
    """
    started: list[subprocess.Popen] = []

    def start(*args, cwd: Path | None = None) -> subprocess.Popen:
        proc = subprocess.Popen(nnback_command(*args), cwd=cwd or tmp_path, env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture(scope="session")
def completed_run(tmp_path_factory, experiment_file, nnback_in):
    """``completed_run(changes=None) -> (config, run folder)``: an uninterrupted ``nnback
    train`` of the tiny experiment with ``changes``, run once per session and shared, so
    copy the folder before changing it.
    """
    runs: dict[str, tuple[Path, Path]] = {}

    def get(changes: dict | None = None) -> tuple[Path, Path]:
        key = json.dumps(changes or {}, sort_keys=True)
        if key not in runs:
            folder = tmp_path_factory.mktemp("completed")
            cfg = experiment_file(folder / "cfg.yaml", changes)
            done = nnback_in(folder, "train", cfg, "--out", folder / "run", "--quiet")
            assert done.returncode == 0, done.stderr
            runs[key] = (cfg, folder / "run")
        return runs[key]

    return get


# --- processes stopped at a chosen state ---------------------------------------------------


def wait_until(condition, proc: subprocess.Popen | None = None, timeout: float = 60.0):
    """Poll ``condition()`` every 2 ms and return its first true value.

    Fails if ``proc`` (when given) exits first, or after ``timeout`` seconds (a bound for
    a machine under load, not a guess at how long the event takes).
    """
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {condition}"
        if proc is None:
            time.sleep(0.002)
            continue
        try:
            proc.wait(timeout=0.002)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"{proc.args} exited with {proc.returncode} too early: {proc.stderr.read()}")
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _all_threads_stopped(pid: int) -> bool:
    try:
        states = [(task / "stat").read_text().rsplit(")", 1)[1].split()[0]
                  for task in Path(f"/proc/{pid}/task").iterdir()]
    except (OSError, IndexError):
        return True  # gone: nothing left to wait for
    return all(state in "TtZX" for state in states)


class Freezer:
    """Stops processes with SIGSTOP and continues them with SIGCONT (Linux)."""

    def __init__(self):
        self.frozen: set[int] = set()

    def when(self, proc: subprocess.Popen, find, timeout: float = 60.0) -> list[int]:
        """Wait until ``find()`` returns the pids whose progress would end the state the
        test waits for (a trial in mid-training, a run before its last step), and return
        them frozen in that state.

        Each time ``find()`` reports pids they are stopped, and ``find()`` is asked again:
        if it still reports them, the state holds until they are thawed; if not (it ended
        in between), they are continued and the wait goes on.
        """

        def frozen_state():
            pids = find()
            if not pids:
                return None
            self.stop(pids)
            if set(pids) <= set(find() or ()):
                return list(pids)
            self.thaw(pids)
            return None

        return wait_until(frozen_state, proc, timeout)

    def stop(self, pids) -> None:
        """SIGSTOP ``pids``; returns once every thread of each is stopped (or gone)."""
        for pid in pids:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            self.frozen.add(pid)
        deadline = time.monotonic() + 10
        while not all(_all_threads_stopped(pid) for pid in pids):
            assert time.monotonic() < deadline, f"processes {pids} did not stop"
            time.sleep(0.001)

    def thaw(self, pids) -> None:
        for pid in pids:
            self.frozen.discard(pid)
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


@pytest.fixture
def freezer():
    """A ``Freezer``; every process it left stopped is continued when the test ends."""
    freezer = Freezer()
    yield freezer
    freezer.thaw(list(freezer.frozen))
