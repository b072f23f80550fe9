"""``nnback train`` killed, signalled, time-limited, locked out and resumed from damaged
checkpoints: every resumed run must end bit-identical to one that was never interrupted,
and every stop must say what happened in its exit code and summary.json. Kills, signals,
locks and the resumes compared with them run real processes; the rest runs in-process.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from nnback.config import load_config
from nnback.data import load_data
from nnback.errors import (
    EXIT_IO,
    EXIT_LOCKED,
    EXIT_SIGHUP,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_TIME_LIMIT,
    EXIT_USAGE,
)
from nnback.runfolder.atomic import TEMP_SUFFIX
from nnback.runfolder.checkpoint import CheckpointStore
from nnback.runfolder.jsonl import read_jsonl
from nnback.train.console import Console
from nnback.train.trainer import Trainer

# 20 epochs of 15 steps with a checkpoint after every step (~220 kB each) and dropout, so
# kills land inside checkpoint writes and the dropout generator state must be resumed.
MEDIUM = {
    "name": "medium",
    "data": {"points_per_class": 100},
    "model": {"layers": [{"type": "linear", "units": 128}, "relu", {"type": "dropout", "p": 0.1},
                         {"type": "linear", "units": 128}, "relu", {"type": "dropout", "p": 0.1},
                         {"type": "linear", "units": "auto"}]},
    "optimizer": {"type": "adam", "lr": 0.001},
    "train": {"epochs": 20, "checkpoint": {"every_steps": 1, "keep": 2}},
}
MEDIUM_STEPS = 20 * 15
TINY_STEPS = 20 * 8
METRIC_KEYS = ("epoch", "step", "train_loss", "val_loss", "val_accuracy")


def model_arrays(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "model.npz", allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def assert_same_model(run: Path, reference: Path) -> None:
    got, want = model_arrays(run), model_arrays(reference)
    assert sorted(got) == sorted(want)
    for name in want:
        assert np.array_equal(got[name], want[name]), name


def metric_rows(run: Path) -> list[tuple]:
    return [tuple(r.get(k) for k in METRIC_KEYS) for r in read_jsonl(run / "metrics.jsonl")]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text(encoding="utf-8"))


def temp_files(folder: Path) -> list[Path]:
    return list(folder.glob(f".*{TEMP_SUFFIX}")) if folder.is_dir() else []


def wait_for_training(proc: subprocess.Popen) -> None:
    """Read stdout up to the ``run folder`` line, printed just before the first step."""
    for line in proc.stdout:
        if " run folder " in line:
            return
    proc.wait(timeout=30)
    pytest.fail(f"nnback exited with {proc.returncode} before training: {proc.stderr.read()}")


def newest_checkpoint_step(run: Path) -> int:
    """The step of the newest ``step-*.npz`` in the run folder (0 before the first)."""
    newest = CheckpointStore(run).step_paths()[:1]
    return int(newest[0].stem.split("-")[1]) if newest else 0


def training(proc: subprocess.Popen, run: Path, after_step: int = 1) -> list[int]:
    """``[proc.pid]`` once the run has a checkpoint of ``after_step`` or later and has not
    ended (for ``freezer.when``), else []."""
    ended = (run / "summary.json").exists()
    return [proc.pid] if newest_checkpoint_step(run) >= after_step and not ended else []


def kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def resume_to_end(nnback, cfg: Path, run: Path) -> subprocess.CompletedProcess:
    done = nnback("train", cfg, "--out", run, "--resume")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


@pytest.fixture
def medium(completed_run):
    """``(config, uninterrupted run folder)`` of the MEDIUM experiment."""
    return completed_run(MEDIUM)


@pytest.fixture
def tiny(completed_run):
    """``(config, uninterrupted run folder)`` of the tiny experiment (checkpoint every 5 steps)."""
    return completed_run()


# --- SIGKILL at random points -----------------------------------------------------------


def test_sigkill_anywhere_then_resume_gives_identical_weights(medium, nnback, nnback_start, freezer,
                                                             tmp_path):
    cfg, reference = medium
    run = tmp_path / "run"
    want_rows = metric_rows(reference)
    # Killed once inside a checkpoint write, and just after a random step in each third of
    # the run (frozen there first, so that the kill lands before the run can end).
    rng = np.random.default_rng(5)
    third = MEDIUM_STEPS // 3
    thirds = [int(rng.integers(k * third + 1, k * third + third // 2)) for k in range(3)]
    for after_step in (thirds[0], None, thirds[1], thirds[2]):
        proc = nnback_start("train", cfg, "--out", run, "--resume")
        wait_for_training(proc)
        if after_step is None:
            freezer.when(proc, lambda proc=proc: [proc.pid] if temp_files(run / "checkpoints") else [])
            kill(proc)
            assert temp_files(run / "checkpoints")
        else:
            freezer.when(proc, lambda proc=proc, after_step=after_step: training(proc, run, after_step))
            kill(proc)
        rows = metric_rows(run) if (run / "metrics.jsonl").exists() else []
        assert rows == want_rows[:len(rows)]
    resume_to_end(nnback, cfg, run)
    assert_same_model(run, reference)
    assert metric_rows(run) == want_rows
    assert temp_files(run) == temp_files(run / "checkpoints") == []
    assert summary(run)["status"] == "completed"


def test_every_checkpoint_agrees_with_the_metrics_log(write_config, tmp_path):
    """Resume keeps the records up to the checkpoint's step: none may come after it."""
    cfg = write_config({"train": {"checkpoint": {"every_steps": 4}}})  # 8 steps per epoch
    exp = load_config(cfg)
    run = tmp_path / "run"
    run.mkdir()
    trainer = Trainer(exp, load_data(exp.data, seed=exp.seed, base_dir=tmp_path), Console("quiet"), str(cfg))
    trainer.open(run)
    saves = []
    save = trainer.store.save

    def recording_save(step, arrays, meta):
        logged = [r for r in read_jsonl(run / "metrics.jsonl") if r["step"] <= step]
        saves.append((step, meta["progress"]["evals"], len(logged)))
        return save(step, arrays, meta)

    trainer.store.save = recording_save
    assert trainer.fit() == "completed"
    assert [s[0] for s in saves] == list(range(4, TINY_STEPS + 1, 4))
    assert all(evals == logged for _, evals, logged in saves)


def test_a_skipped_batch_leaves_the_running_statistics_as_they_were(write_config, tmp_path):
    cfg = write_config({"model": {"layers": [{"type": "linear", "units": 8, "bias": False},
                                            "batchnorm", "relu", {"type": "linear", "units": "auto"}]},
                        "train": {"divergence": {"skip_batches": 1}}})
    exp = load_config(cfg)
    run = tmp_path / "run"
    run.mkdir()
    trainer = Trainer(exp, load_data(exp.data, seed=exp.seed, base_dir=tmp_path), Console("quiet"), str(cfg))
    trainer.open(run)
    train = trainer.bundle.train
    xb, yb = train.take(np.arange(16))
    trainer._step(xb, yb)  # a finite batch moves them
    before = {name: array.copy() for name, array in trainer.model.buffers()}
    assert not np.array_equal(before["1.running_mean"], 0)
    bad = xb.copy()
    bad[0, 0] = np.inf
    with np.errstate(invalid="ignore", over="ignore"):  # as fit() runs its steps
        trainer._step(bad, yb)
    assert trainer.progress.skipped == 1
    for name, array in trainer.model.buffers():
        np.testing.assert_array_equal(array, before[name], err_msg=name)


# --- SIGTERM / SIGINT / SIGHUP and the time budget ---------------------------------------------------


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, EXIT_SIGTERM), (signal.SIGINT, EXIT_SIGINT),
                                       (signal.SIGHUP, EXIT_SIGHUP)])
def test_signal_stops_with_checkpoint_and_resume_is_exact(medium, nnback, nnback_start, freezer, tmp_path,
                                                          sig, code):
    cfg, reference = medium
    run = tmp_path / "run"
    proc = nnback_start("train", cfg, "--out", run)
    wait_for_training(proc)
    freezer.when(proc, lambda: training(proc, run))  # just after its first checkpoint
    proc.send_signal(sig)  # handled as soon as it continues, long before its last step
    sent = time.monotonic()
    freezer.thaw([proc.pid])
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 5
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    stopped = summary(run)
    assert (stopped["status"], stopped["exit_code"]) == ("interrupted", code)
    assert 0 < stopped["steps"] < MEDIUM_STEPS
    latest = CheckpointStore(run).load_latest()
    assert latest.meta["progress"]["step"] == stopped["steps"]
    resume_to_end(nnback, cfg, run)
    assert_same_model(run, reference)
    assert metric_rows(run) == metric_rows(reference)


def test_the_printed_command_continues_a_run_started_without_out(tiny, nnback_start, tmp_path):
    """After Ctrl-C, the last line names the command that continues the run (in the
    folder nnback chose), and that command, run as printed, resumes it."""
    cfg, _ = tiny
    slow = tmp_path / "slow.yaml"
    config = yaml.safe_load(cfg.read_text())
    config["train"]["epochs"] = 100_000
    config["output"] = {"dir": "runs"}
    slow.write_text(yaml.safe_dump(config))
    proc = nnback_start("train", slow.name, "--set", "seed=3")
    wait_for_training(proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_SIGINT, stderr
    command = shlex.split(stdout.splitlines()[-1].split("continue with: ")[1])
    run = next((tmp_path / "runs" / "tiny").iterdir()).relative_to(tmp_path)
    assert command == ["nnback", "train", slow.name, "--set", "seed=3", "--out", str(run), "--resume"]
    resumed = nnback_start(*command[1:])
    assert f" resuming from {run}" in next(resumed.stdout)
    wait_for_training(resumed)
    resumed.send_signal(signal.SIGTERM)
    assert resumed.wait(timeout=30) == EXIT_SIGTERM


def test_time_budget_stops_cleanly_and_resume_is_exact(medium, nnback_cli, tmp_path, monkeypatch):
    cfg, reference = medium
    run = tmp_path / "run"
    # A clock that moves a millisecond each time it is read: the budget ends after the
    # same work on any machine, however fast or busy.
    ticks = iter(range(10**9))
    monkeypatch.setattr(time, "monotonic", lambda: next(ticks) * 1e-3)
    steps = []
    for budget in (["--max-time", "0.4s"], ["--set", "train.max_time=0.4s", "--resume"]):
        stopped = nnback_cli("train", cfg, "--out", run, *budget)
        assert stopped.returncode == EXIT_TIME_LIMIT, stopped.stderr
        assert stopped.stderr == ""
        record = summary(run)
        assert (record["status"], record["exit_code"]) == ("time_limit", EXIT_TIME_LIMIT)
        assert CheckpointStore(run).load_latest().meta["progress"]["step"] == record["steps"]
        steps.append(record["steps"])
    assert 0 < steps[0] < steps[1] < MEDIUM_STEPS
    resume_to_end(nnback_cli, cfg, run)
    assert_same_model(run, reference)
    assert metric_rows(run) == metric_rows(reference)


# --- damaged checkpoints ----------------------------------------------------------------


def copy_run(reference: Path, run: Path) -> CheckpointStore:
    """Copy a run folder, with ``last.npz`` a hard link to the newest step file (as
    earlier versions wrote it)."""
    shutil.copytree(reference, run)
    store = CheckpointStore(run)
    store.last_path.unlink()
    os.link(store.step_paths()[0], store.last_path)
    return store


def flip_bytes(path: Path) -> None:
    """Invert 64 bytes in the middle of ``path``, in place (hard links see it too)."""
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        block = f.read(64)
        f.seek(-len(block), os.SEEK_CUR)
        f.write(bytes(b ^ 0xFF for b in block))


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def files_state(run: Path) -> dict[str, tuple]:
    return {str(p.relative_to(run)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage", [flip_bytes, truncate])
def test_damaged_last_checkpoint_falls_back_and_finishes_identically(tiny, nnback, tmp_path, damage):
    cfg, reference = tiny
    run = tmp_path / "run"
    store = copy_run(reference, run)
    newest, previous = store.step_paths()[:2]
    damage(store.last_path)  # the same file as the newest step file
    done = resume_to_end(nnback, cfg, run)
    warnings = [line for line in done.stderr.splitlines() if line[20:].startswith("warning: ")]
    assert len(warnings) == 2
    assert str(store.last_path) in warnings[0] and str(newest) in warnings[1]
    assert all(f"falling back to {previous}" in line for line in warnings)
    assert f"resuming from {previous}" in done.stdout
    assert_same_model(run, reference)
    assert metric_rows(run) == metric_rows(reference)
    assert CheckpointStore(run).load_latest().path == store.last_path


def test_damaged_last_copy_falls_back_to_the_completed_step_file(tiny, nnback, tmp_path):
    cfg, reference = tiny
    run = tmp_path / "run"
    store = copy_run(reference, run)
    data = store.last_path.read_bytes()
    store.last_path.unlink()
    store.last_path.write_bytes(data[: len(data) // 3])  # no longer the step file's inode
    before = files_state(run)
    done = resume_to_end(nnback, cfg, run)
    assert done.stderr[20:].startswith(f"warning: {store.last_path}: ")
    assert f"falling back to {store.step_paths()[0]}" in done.stderr
    assert "already completed" in done.stdout
    assert files_state(run) == before


def test_no_readable_checkpoint_is_one_error_line_and_changes_nothing(tiny, nnback_cli, tmp_path):
    cfg, reference = tiny
    run = tmp_path / "run"
    store = copy_run(reference, run)
    for path in store.step_paths():
        truncate(path)
    before = files_state(run)
    failed = nnback_cli("train", cfg, "--out", run, "--resume")
    assert failed.returncode == EXIT_USAGE
    assert failed.stderr.count("\n") == 1
    assert failed.stderr.startswith(f"error: {store.dir}: no readable checkpoint (")
    assert str(store.last_path) in failed.stderr
    assert files_state(run) == before


# --- the run lock --------------------------------------------------------------------------


def test_second_process_on_a_busy_folder_exits_locked(medium, nnback, nnback_start, freezer, tmp_path):
    cfg, _ = medium
    run = tmp_path / "run"
    first = nnback_start("train", cfg, "--out", run, "--set", "train.epochs=200")
    wait_for_training(first)
    freezer.stop([first.pid])  # it holds the lock, and cannot finish, while the others try
    for extra in (["--resume"], []):
        started = time.monotonic()
        second = nnback("train", cfg, "--out", run, "--set", "train.epochs=200", *extra)
        assert time.monotonic() - started < 10
        assert second.returncode == EXIT_LOCKED, second.stderr
        assert second.stderr.count("\n") == 1
        assert second.stderr.startswith(
            f"error: {run}: locked by pid {first.pid} on host {socket.gethostname()} since ")
    assert first.poll() is None
    first.send_signal(signal.SIGTERM)
    freezer.thaw([first.pid])
    first.communicate(timeout=30)
    assert first.returncode == EXIT_SIGTERM


def test_stale_lock_of_a_dead_process_is_taken_over(write_config, nnback, tmp_path):
    cfg = write_config()
    dead = subprocess.Popen(["true"])  # a pid that has exited
    dead.wait()
    run = tmp_path / "run"
    run.mkdir()
    (run / "lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                          "started": "2020-01-01T00:00:00"}))
    done = nnback("train", cfg, "--out", run, "--quiet")
    assert done.returncode == 0, done.stderr
    assert summary(run)["status"] == "completed"
    assert not (run / "lock").exists()


def test_lock_from_another_host_is_respected(write_config, nnback, tmp_path):
    cfg = write_config()
    run = tmp_path / "run"
    run.mkdir()
    (run / "lock").write_text(json.dumps({"pid": 1, "host": "elsewhere.invalid",
                                          "started": "2020-01-01T00:00:00"}))
    locked = nnback("train", cfg, "--out", run)
    assert locked.returncode == EXIT_LOCKED
    assert locked.stderr == (f"error: {run}: locked by pid 1 on host elsewhere.invalid since "
                             f"2020-01-01T00:00:00; another nnback train is writing here "
                             f"(delete {run / 'lock'} if that job is gone)\n")
    assert sorted(p.name for p in run.iterdir()) == ["lock"]


# --- failing before training -----------------------------------------------------------------


@pytest.mark.parametrize("where, code", [("under_file", EXIT_USAGE), ("file", EXIT_USAGE), ("proc", EXIT_IO)])
def test_unwritable_run_folder_fails_before_training(write_config, nnback_cli, tmp_path, where, code):
    """A path the user got wrong (a file in it) is a user error; /proc cannot be written."""
    cfg = write_config()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = {"under_file": blocker / "run", "file": blocker, "proc": Path("/proc/nnback-run")}[where]
    failed = nnback_cli("train", cfg, "--out", out)
    assert failed.returncode == code
    assert failed.stderr.count("\n") == 1 and failed.stderr.startswith(f"error: {out}")
    assert "run folder" not in failed.stdout
