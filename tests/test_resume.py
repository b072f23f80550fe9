"""A run stopped after epoch k and continued with ``--resume`` ends exactly where an
uninterrupted run ends: same weights, same metrics, same summary.

Two ways to stop: the trainer's own stop request (what SIGTERM/SIGINT set), raised at
the end of epoch k's evaluation, so training stops one step into epoch k + 1 with a
checkpoint; and a hard kill right after the checkpoint of epoch k, rebuilt from the
uninterrupted run's files (the later checkpoints, final weights and summary never
written, best.npz as it stood then).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from nnback.cli import app
from nnback.errors import EXIT_SIGTERM
from nnback.train.trainer import Trainer

EXPERIMENT = {
    "name": "resume",
    "seed": 5,
    "data": {"source": "spiral", "classes": 3, "points_per_class": 40,
             "split": {"val": 0.25}, "preprocess": "standardize"},
    "model": {"mlp": {"hidden": [24], "dropout": 0.2}},
    "loss": "softmax_cross_entropy",
    "optimizer": {"type": "adam", "lr": 0.05},
    "schedule": {"type": "cosine", "warmup_epochs": 1},
    "train": {"epochs": 6, "batch_size": 16,
              "early_stopping": {"metric": "val_loss", "patience": 10},
              "checkpoint": {"keep": 100}},
}
STOP_AFTER = 3


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def weights(run: Path) -> dict:
    with np.load(run / "model.npz", allow_pickle=False) as saved:
        return {name: saved[name] for name in saved.files if name != "meta"}


def metrics(run: Path) -> list[dict]:
    timing = ("seconds", "samples_per_second")
    return [{k: v for k, v in json.loads(line).items() if k not in timing}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def resume_to_the_end(config: Path, run: Path, reference: Path):
    result = invoke("train", config, "--out", run, "--resume", "-q")
    assert result.exit_code == 0, result.output
    assert_same_run(run, reference)


def assert_same_run(resumed: Path, reference: Path):
    a, b = weights(resumed), weights(reference)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert metrics(resumed) == metrics(reference)
    summaries = [json.loads((run / "summary.json").read_text()) for run in (resumed, reference)]
    for key in ("status", "epochs", "steps", "best_epoch", "best", "final"):
        assert summaries[0][key] == summaries[1][key], key


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run."""
    folder = tmp_path_factory.mktemp("resume")
    config = folder / "resume.yaml"
    config.write_text(yaml.safe_dump(EXPERIMENT))
    result = invoke("train", config, "--out", folder / "reference", "-q")
    assert result.exit_code == 0, result.output
    return config, folder / "reference"


def test_reference_run_is_a_real_test(reference):
    _, run = reference
    records = metrics(run)
    assert len(records) == EXPERIMENT["train"]["epochs"]
    assert records[0]["step"] == 6  # 90 training points in batches of 16
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert STOP_AFTER < summary["best_epoch"] < summary["epochs"]  # the best weights are restored


def train_and_stop(config: Path, run: Path, monkeypatch) -> None:
    """Train into ``run`` with a stop request (as SIGTERM makes) after epoch STOP_AFTER."""
    evaluate = Trainer._evaluate

    def stop_after_epoch(self):
        record = evaluate(self)
        if self.progress.epoch == STOP_AFTER and self.progress.batch == 0:
            self.stop_reason = "SIGTERM"
        return record

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_evaluate", stop_after_epoch)
        stopped = invoke("train", config, "--out", run, "-q")
    assert stopped.exit_code == EXIT_SIGTERM


def test_stop_request_then_resume(reference, tmp_path, monkeypatch):
    config, ref = reference
    run = tmp_path / "run"
    train_and_stop(config, run, monkeypatch)
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["epochs"], summary["steps"]) == ("interrupted", STOP_AFTER, 19)
    assert not (run / "model.npz").exists()
    resume_to_the_end(config, run, ref)


def killed_after_a_checkpoint(reference: Path, run: Path, epochs: int = STOP_AFTER) -> int:
    """``run``: the reference folder as a kill right after the checkpoint of epoch
    ``epochs`` left it; returns the step of its best.npz."""
    shutil.copytree(reference, run)
    checkpoints = run / "checkpoints"
    step = metrics(run)[epochs - 1]["step"]
    for path in checkpoints.iterdir():
        if path.name in ("last.npz", "best.npz") or int(path.stem.split("-")[1]) > step:
            path.unlink()
    (run / "model.npz").unlink()
    (run / "summary.json").unlink()
    shutil.copy(checkpoints / f"step-{step:09d}.npz", checkpoints / "last.npz")
    # best.npz as it was then: the weights of the best evaluation so far, which the
    # checkpoint written right after that evaluation holds too.
    best = min(metrics(run)[:epochs], key=lambda record: record["val_loss"])
    shutil.copy(checkpoints / f"step-{best['step']:09d}.npz", checkpoints / "best.npz")
    assert len(metrics(run)) > epochs  # lines written after the checkpoint are dropped
    return best["step"]


def test_killed_after_a_checkpoint_then_resume(reference, tmp_path):
    config, ref = reference
    run = tmp_path / "run"
    killed_after_a_checkpoint(ref, run)
    resume_to_the_end(config, run, ref)


@pytest.mark.parametrize("step_file_too", [False, True])
def test_a_damaged_best_checkpoint_does_not_block_resume(reference, tmp_path, step_file_too):
    """best.npz is taken from the step checkpoint of the same weights; without that one,
    the best is tracked again from the resumed checkpoint (the reference's best comes
    later, so the run still ends with the same weights)."""
    config, ref = reference
    run = tmp_path / "run"
    best_step = killed_after_a_checkpoint(ref, run)
    best = run / "checkpoints" / "best.npz"
    best.write_bytes(best.read_bytes()[:1000])
    if step_file_too:
        (run / "checkpoints" / f"step-{best_step:09d}.npz").unlink()
    result = invoke("train", config, "--out", run, "--resume", "-q")
    assert result.exit_code == 0, result.output
    assert f"warning: {best}: truncated or not an .npz file" in result.stderr
    assert ("best weights so far" in result.stderr) == step_file_too
    assert_same_run(run, ref)


def test_resume_of_a_finished_run_changes_nothing(reference, tmp_path):
    config, ref = reference
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    result = invoke("train", config, "--out", run, "--resume")
    assert result.stdout.strip().endswith("the run is already completed")
    resume_to_the_end(config, run, ref)


def test_resume_refuses_a_changed_config_and_offers_no_command_a_broken_saved_one_cannot_run(
        reference, tmp_path):
    """The saved config no longer loads (hand-edited), so no command to continue with it is offered."""
    config, ref = reference
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    (run / "config.yaml").write_text(
        (run / "config.yaml").read_text().replace("lr: 0.05", "lr: -0.05"))
    result = invoke("train", config, "--out", run, "--resume")
    assert result.exit_code == 2
    assert result.stderr == (f"error: {run}: the saved config differs in optimizer.lr; "
                             f"add --force to resume anyway\n")


def test_a_refused_resume_names_the_command_that_continues_with_the_saved_settings(
        reference, tmp_path, monkeypatch):
    config, ref = reference
    run = tmp_path / "run"
    train_and_stop(config, run, monkeypatch)
    result = invoke("train", config, "--out", run, "--resume", "--set", "optimizer.lr=0.1")
    command = f"nnback train {run / 'config.yaml'} --out {run} --resume"
    assert result.exit_code == 2
    assert result.stderr == (f"error: {run}: the saved config differs in optimizer.lr; add --force to "
                             f"resume anyway, or to continue with the saved settings: {command}\n")
    resume_to_the_end(run / "config.yaml", run, ref)


def test_stop_at_an_epoch_boundary_then_resume_logs_that_epochs_learning_rate(reference, tmp_path,
                                                                            monkeypatch):
    """Stopped after the last step of an epoch, before its evaluation: the resumed run
    logs that evaluation with the learning rate of the step just taken (cosine schedule)."""
    config, ref = reference
    step = Trainer._step

    def stop_at_epoch_end(self, xb, yb):  # the step is counted after it returns
        step(self, xb, yb)
        if self.progress.epoch == STOP_AFTER - 1 and self.progress.batch == self.steps_in_epoch - 1:
            self.stop_reason = "SIGTERM"

    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_step", stop_at_epoch_end)
        stopped = invoke("train", config, "--out", run, "-q")
    assert stopped.exit_code == EXIT_SIGTERM
    assert len(metrics(run)) == STOP_AFTER - 1
    resume_to_the_end(config, run, ref)


def test_the_summary_counts_the_time_of_every_segment(reference, tmp_path, monkeypatch):
    config, _ = reference
    clock = iter(range(0, 10 ** 6, 10))  # every reading of the clock is 10 s after the last
    monkeypatch.setattr("nnback.train.trainer.time.monotonic", lambda: next(clock))
    run = tmp_path / "run"
    train_and_stop(config, run, monkeypatch)
    first = json.loads((run / "summary.json").read_text())["wall_seconds"]
    assert invoke("train", config, "--out", run, "--resume", "-q").exit_code == 0
    total = json.loads((run / "summary.json").read_text())["wall_seconds"]
    assert first > 0
    assert total > first + 10 * 6 * (6 - STOP_AFTER)  # ten seconds a step, at the least


def test_resume_accepts_a_config_saved_with_null_weight_decay(reference, tmp_path):
    """Earlier versions wrote adam's default weight decay as null; it resolves to 0 now."""
    config, ref = reference
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optimizer"]["weight_decay"] == 0.0
    saved["optimizer"]["weight_decay"] = None
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    result = invoke("train", config, "--out", run, "--resume")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("the run is already completed")


CONVNET = {
    "name": "resume-cnn",
    "seed": 3,
    "data": {"source": "digits", "split": {"val": 0.5, "test": 0.3},
             "preprocess": {"type": "standardize", "per_channel": True}},
    "model": {"layers": [
        {"type": "conv2d", "channels": 4, "kernel": 3, "padding": 1},
        {"type": "batchnorm2d"},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "conv2d", "channels": 6, "kernel": [2, 3], "stride": 2},
        {"type": "relu"},
        {"type": "flatten"},
        {"type": "dropout", "p": 0.2},
        {"type": "linear", "units": "auto"},
    ]},
    "loss": "softmax_cross_entropy",
    "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9},
    "train": {"epochs": 4, "batch_size": 32, "checkpoint": {"keep": 100}},
}


def test_convnet_killed_after_a_checkpoint_resumes_bit_identically(tmp_path):
    config = tmp_path / "cnn.yaml"
    config.write_text(yaml.safe_dump(CONVNET))
    reference = tmp_path / "reference"
    result = invoke("train", config, "--out", reference, "-q")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    killed_after_a_checkpoint(reference, run, epochs=2)
    resume_to_the_end(config, run, reference)
