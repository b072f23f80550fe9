import json
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nnback.errors import EXIT_LOCKED, LockedError
from nnback.runfolder import lock as lock_module
from nnback.runfolder.lock import RunLock

REPO = Path(__file__).resolve().parents[1]

# Tries the lock in a fresh interpreter; exits EXIT_LOCKED with the message if held.
_TRY_LOCK = f"""
import sys
from nnback.errors import LockedError
from nnback.runfolder import lock as lock_module
from nnback.runfolder.lock import RunLock
try:
    RunLock(sys.argv[1]).acquire()
except LockedError as exc:
    print(exc)
    sys.exit({EXIT_LOCKED})
"""


def _try_in_other_process(folder):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", _TRY_LOCK, str(folder)], capture_output=True, text=True, env=env, timeout=60
    )


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write_lock(folder, **holder):
    (folder / "lock").write_text(json.dumps(holder))


def test_lock_file_holds_pid_host_and_start_and_is_removed_on_exit(tmp_path):
    with RunLock(tmp_path / "run") as lock:
        holder = json.loads(lock.path.read_text())
        assert holder["pid"] == os.getpid()
        assert holder["host"] == socket.gethostname()
        assert holder["started"][:2] == "20"
        assert lock.held
    assert not lock.held
    assert not (tmp_path / "run" / "lock").exists()


def test_second_process_is_refused_while_held_then_succeeds(tmp_path):
    with RunLock(tmp_path):
        refused = _try_in_other_process(tmp_path)
    assert refused.returncode == EXIT_LOCKED
    assert refused.stdout.startswith(
        f"{tmp_path}: locked by pid {os.getpid()} on host {socket.gethostname()} since ")
    assert refused.stdout.rstrip().endswith("; another nnback train is writing here")
    assert _try_in_other_process(tmp_path).returncode == 0


def test_second_lock_in_same_process_is_refused(tmp_path):
    with RunLock(tmp_path), pytest.raises(LockedError, match="another nnback train is writing here"):
        RunLock(tmp_path).acquire()


def test_stale_lock_of_dead_process_is_taken_over(tmp_path):
    _write_lock(tmp_path, pid=_dead_pid(), host=socket.gethostname(), started="2026-01-01T00:00:00+00:00")
    with RunLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_lock_naming_a_live_pid_without_kernel_lock_is_stale(tmp_path):
    # The pid was reused by an unrelated process: nobody holds the file's flock.
    _write_lock(tmp_path, pid=os.getpid(), host=socket.gethostname(), started="2026-01-01T00:00:00+00:00")
    with RunLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


@pytest.mark.parametrize("content", ["", '{"pid": 12', "[]", '{"pid": 0}', "[" * 70_000])
def test_empty_or_garbled_lock_is_taken_over(tmp_path, content):
    (tmp_path / "lock").write_text(content)
    with RunLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_lock_from_another_host_is_respected(tmp_path):
    _write_lock(tmp_path, pid=_dead_pid(), host="elsewhere.invalid", started="2026-01-01T00:00:00+00:00")
    with pytest.raises(LockedError) as info:
        RunLock(tmp_path).acquire()
    assert str(info.value).startswith(f"{tmp_path}: locked by pid ")
    assert "on host elsewhere.invalid since 2026-01-01T00:00:00+00:00" in str(info.value)
    assert (tmp_path / "lock").exists()


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path):
    lock = RunLock(tmp_path)
    lock.acquire()
    os.unlink(lock.path)
    _write_lock(tmp_path, pid=1, host="other", started="x")
    lock.release()
    assert json.loads((tmp_path / "lock").read_text())["host"] == "other"


def _contend(folder, barrier, results):
    lock = RunLock(folder)
    try:
        lock.acquire()
        results.put("won")
    except LockedError:
        results.put("refused")
    barrier.wait(timeout=30)  # the winner holds the lock until everyone has tried
    lock.release()


def test_concurrent_takeover_of_a_stale_lock_has_one_winner(tmp_path):
    _write_lock(tmp_path, pid=_dead_pid(), host=socket.gethostname(), started="2026-01-01T00:00:00+00:00")
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    workers = [ctx.Process(target=_contend, args=(tmp_path, barrier, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(results.get(timeout=5) for _ in workers) == ["refused"] * 3 + ["won"]
    assert not (tmp_path / "lock").exists()


def test_without_flock_support_the_pid_decides(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "_try_flock", lambda fd: None)
    _write_lock(tmp_path, pid=os.getpid(), host=socket.gethostname(), started="2026-01-01T00:00:00+00:00")
    with pytest.raises(LockedError, match=f"locked by pid {os.getpid()} "):
        RunLock(tmp_path).acquire()
    _write_lock(tmp_path, pid=_dead_pid(), host=socket.gethostname(), started="2026-01-01T00:00:00+00:00")
    with RunLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
