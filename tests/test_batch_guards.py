"""``nnback train`` guards for unattended jobs: --skip-if-done, --resume with another
config, divergence, and errors reported as one line with their own exit code before
anything is trained or written.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from nnback.errors import EXIT_DIVERGED, EXIT_TIME_LIMIT, EXIT_USAGE
from nnback.layers import Linear, ReLU
from nnback.model import Sequential
from nnback.runfolder.checkpoint import CheckpointStore, load_checkpoint
from nnback.runfolder.jsonl import read_jsonl
from nnback.train.divergence import find_nonfinite_grad


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text(encoding="utf-8"))


def one_error_line(result, code: int) -> str:
    """The single ``error: ...`` line of a failed run (asserting there is nothing else)."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def numbers(run: Path) -> list[dict]:
    """The metrics records without their timings."""
    return [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_second")}
            for r in read_jsonl(run / "metrics.jsonl")]


@pytest.fixture
def finished(completed_run):
    """``(config, run folder)`` of a completed tiny run, shared: copy it before changing it."""
    return completed_run()


@pytest.fixture
def completed(finished, tmp_path):
    """``(config, run folder)`` of a completed tiny run of this test's own."""
    cfg, run = finished
    shutil.copytree(run, tmp_path / "run")
    return cfg, tmp_path / "run"


# --- --skip-if-done and --resume with another config ----------------------------------------


@pytest.mark.parametrize("extra", [[], ["--resume"]])
def test_skip_if_done_exits_at_once_on_a_completed_run(completed, nnback_cli, extra):
    cfg, run = completed
    model_mtime = (run / "model.npz").stat().st_mtime_ns
    records = read_jsonl(run / "metrics.jsonl")
    started = time.monotonic()
    skipped = nnback_cli("train", cfg, "--out", run, "--skip-if-done", *extra)
    assert time.monotonic() - started < 10
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stdout.endswith(f" {run}: already holds a completed run of this config; nothing to do\n")
    assert skipped.stdout.count("\n") == 1
    assert (run / "model.npz").stat().st_mtime_ns == model_mtime
    assert read_jsonl(run / "metrics.jsonl") == records


def test_skip_if_done_ignores_keys_that_only_control_the_run(completed, nnback_cli):
    cfg, run = completed
    skipped = nnback_cli("train", cfg, "--out", run, "--skip-if-done",
                     "--set", "train.max_time=1h", "--set", "train.checkpoint.keep=7")
    assert skipped.returncode == 0, skipped.stderr
    assert "nothing to do" in skipped.stdout


def test_skip_if_done_with_another_config_refuses_to_touch_the_run(completed, nnback_cli):
    cfg, run = completed
    model_mtime = (run / "model.npz").stat().st_mtime_ns
    refused = nnback_cli("train", cfg, "--out", run, "--skip-if-done", "--set", "optimizer.lr=0.1")
    assert one_error_line(refused, EXIT_USAGE) == (
        f"error: {run}: already holds a run; add --resume to continue it, or choose another --out")
    differs = nnback_cli("train", cfg, "--out", run, "--skip-if-done", "--resume",
                     "--set", "optimizer.lr=0.1", "--set", "train.epochs=30")
    assert one_error_line(differs, EXIT_USAGE) == (
        f"error: {run}: the saved config differs in optimizer.lr, train.epochs; add --force to resume "
        f"anyway, or to continue with the saved settings: "
        f"nnback train {run}/config.yaml --out {run} --resume")
    assert (run / "model.npz").stat().st_mtime_ns == model_mtime


def test_force_resumes_an_unfinished_run_with_another_config(completed, nnback_cli):
    cfg, run = completed
    store = CheckpointStore(run)
    newest = store.step_paths()[0]
    newest.unlink()
    store.last_path.unlink()  # as if killed before the last checkpoint of epoch 20
    longer = ("--set", "train.epochs=25")
    refused = nnback_cli("train", cfg, "--out", run, "--resume", *longer)
    assert "differs in train.epochs" in one_error_line(refused, EXIT_USAGE)
    forced = nnback_cli("train", cfg, "--out", run, "--resume", "--force", *longer)
    assert forced.returncode == 0, forced.stderr
    assert (summary(run)["status"], summary(run)["epochs"]) == ("completed", 25)
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == list(range(1, 26))


@pytest.mark.parametrize("change, reason", [
    ("model.layers.0.units=8", "shape mismatch for 0.W"),
    ("optimizer.momentum=0", "optimizer state mismatch"),
])
def test_force_with_a_config_the_checkpoint_cannot_fit_is_one_error_line(completed, nnback_cli, change,
                                                                         reason):
    cfg, run = completed
    store = CheckpointStore(run)
    store.step_paths()[0].unlink()
    store.last_path.unlink()  # an unfinished run, so --resume loads a checkpoint
    failed = nnback_cli("train", cfg, "--out", run, "--resume", "--force", "--set", change)
    line = one_error_line(failed, EXIT_USAGE)
    assert "does not fit this config" in line and reason in line


def test_a_zero_time_budget_stops_at_once(finished, nnback_cli, tmp_path):
    cfg, _ = finished
    stopped = nnback_cli("train", cfg, "--out", tmp_path / "run", "--max-time", "0", "--quiet")
    assert stopped.returncode == EXIT_TIME_LIMIT, stopped.stderr
    assert summary(tmp_path / "run")["status"] == "time_limit"


def test_resume_of_a_run_killed_while_finishing_writes_its_outputs(completed, nnback_cli):
    cfg, run = completed
    model = (run / "model.npz").read_bytes()
    (run / "model.npz").unlink()
    (run / "summary.json").unlink()  # killed after the final checkpoint, before these
    done = nnback_cli("train", cfg, "--out", run, "--resume")
    assert done.returncode == 0, done.stderr
    assert summary(run)["status"] == "completed"
    with np.load(run / "model.npz", allow_pickle=False) as got, \
            np.load(io.BytesIO(model), allow_pickle=False) as want:
        assert sorted(got.files) == sorted(want.files)
        assert all(np.array_equal(got[k], want[k]) for k in want.files)


def test_resume_without_a_checkpoint_starts_fresh_with_a_clean_log(finished, nnback_cli, tmp_path):
    cfg, reference = finished
    run = tmp_path / "run"
    run.mkdir()  # a run killed before its first checkpoint: a record and a half
    (run / "metrics.jsonl").write_bytes((reference / "metrics.jsonl").read_bytes()[:300])
    done = nnback_cli("train", cfg, "--out", run, "--resume")
    assert done.returncode == 0, done.stderr
    assert "no checkpoint found; starting fresh" in done.stdout
    assert numbers(run) == numbers(reference)


# --- divergence --------------------------------------------------------------------------


DIVERGING = {
    "data": {"source": "sine", "samples": 100, "split": {"val": 0.2}},
    "loss": "mse",
    "optimizer": {"type": "sgd", "lr": 1.0e6, "momentum": 0.0},
    "train": {"checkpoint": {"every_steps": 1}},
}


def test_huge_learning_rate_stops_with_diverged(write_config, nnback_cli, tmp_path):
    cfg = write_config(DIVERGING)
    run = tmp_path / "run"
    failed = nnback_cli("train", cfg, "--out", run)
    line = one_error_line(failed, EXIT_DIVERGED)
    record = summary(run)
    assert (record["status"], record["exit_code"]) == ("diverged", EXIT_DIVERGED)
    step = record["steps"]
    assert line == f"error: {record['error']}"
    assert record["error"].startswith(f"epoch 1, step {step}: loss is inf (")
    assert "layer 2 Linear(16, 1)" in record["error"]
    assert record["error"].endswith(f"batch saved to divergence/step-{step:09d}.npz")
    arrays, meta = load_checkpoint(run / "checkpoints" / "last.npz")
    assert meta["progress"]["step"] == step
    assert all(np.isfinite(a).all() for k, a in arrays.items() if k.startswith("model/"))
    with np.load(run / "divergence" / f"step-{step:09d}.npz", allow_pickle=False) as batch:
        assert batch["X"].shape == (16, 1) and batch["y"].shape[0] == 16
    assert not (run / "model.npz").exists()


def test_divergence_skips_up_to_the_configured_batches(write_config, nnback_cli, tmp_path, recwarn):
    cfg = write_config({**DIVERGING, "train": {"divergence": {"skip_batches": 3},
                                               "checkpoint": {"every_steps": 1}}})
    run = tmp_path / "run"
    failed = nnback_cli("train", cfg, "--out", run)
    assert failed.returncode == EXIT_DIVERGED
    warnings = [line for line in failed.stderr.splitlines()
                if line[20:].startswith("warning: skipping a non-finite")]
    assert len(warnings) == 3
    assert failed.stderr.splitlines()[-1].startswith("error: ")
    assert "Traceback" not in failed.stderr and "RuntimeWarning" not in failed.stderr
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert summary(run)["skipped_batches"] == 4
    assert len(list((run / "divergence").glob("step-*.npz"))) == 4


def test_first_nonfinite_gradient_is_named_in_backward_order():
    rng = np.random.default_rng(0)
    model = Sequential([Linear(2, 4, rng=rng), ReLU(), Linear(4, 3, rng=rng)])
    model.backward(np.ones_like(model.forward(rng.standard_normal((5, 2)).astype(np.float32))))
    assert find_nonfinite_grad(model) is None
    model[0].grads["W"][0, 0] = np.nan
    assert find_nonfinite_grad(model) == "parameter 0.W of layer 0 Linear(2, 4)"
    model[2].grads["b"][1] = np.inf
    assert find_nonfinite_grad(model) == "parameter 2.b of layer 2 Linear(4, 3)"
    model[0].grads["W"][0, 0] = 0.0
    model[2].grads["b"][:] = 3e38  # finite, though their float32 sum overflows
    with np.errstate(over="ignore"):
        assert find_nonfinite_grad(model) is None


# --- errors before training ---------------------------------------------------------------


def test_missing_data_file_fails_before_a_run_folder_exists(write_config, nnback_cli, tmp_path):
    cfg = write_config({"data": {"source": "missing.csv", "target": "label", "split": {"val": 0.2}}})
    failed = nnback_cli("train", cfg, "--out", tmp_path / "run")
    assert "missing.csv" in one_error_line(failed, EXIT_USAGE)
    assert not (tmp_path / "run").exists()
    failed = nnback_cli("train", cfg)
    one_error_line(failed, EXIT_USAGE)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, expected", [
    (["--max-time", "3x"], "--max-time: invalid duration '3x'"),
    (["--resume"], "--resume and --skip-if-done need a fixed run folder"),
    (["--set", "optimizer.lr=-1"], "optimizer.lr: must be greater than 0 (got -1)"),
    (["--set", "train.max_time=soon"], "train.max_time: invalid duration 'soon'"),
    (["--set", "nonsense"], "--set nonsense: expected KEY=VALUE"),
])
def test_bad_arguments_are_one_error_line(write_config, nnback_cli, tmp_path, args, expected):
    cfg = write_config()
    failed = nnback_cli("train", cfg, *args)
    assert expected in one_error_line(failed, EXIT_USAGE)
    assert not (tmp_path / "runs").exists()


def test_missing_config_file_is_one_error_line(nnback_cli, tmp_path):
    failed = nnback_cli("train", tmp_path / "nope.yaml", "--out", tmp_path / "run")
    assert one_error_line(failed, EXIT_USAGE) == f"error: {tmp_path / 'nope.yaml'}: file not found"
    assert not (tmp_path / "run").exists()


# --- the output stream going away ------------------------------------------------------


def test_a_closed_stdout_does_not_stop_training(write_config, nnback_start, tmp_path):
    """A pipe whose reader exits (`nnback train ... | head -1`, a dead log shipper)."""
    cfg = write_config({"train": {"epochs": 150}})  # many more lines than are read
    run = tmp_path / "run"
    proc = nnback_start("train", cfg, "--out", run)
    assert " run folder " in proc.stdout.readline()
    proc.stdout.close()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert stderr.splitlines()[0] == ("warning: output stream closed; training goes on, "
                                      "its log is in metrics.jsonl")
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr
    assert summary(run)["status"] == "completed"
    assert (run / "model.npz").exists()
    assert numbers(run)[-1]["epoch"] == 150
