"""The training loop in-process: what it leaves alone and what a checkpoint restores."""

from __future__ import annotations

import numpy as np
import pytest

from nnback.config import load_config
from nnback.data import load_data
from nnback.train.console import Console
from nnback.train.trainer import Trainer


def make_trainer(cfg, tmp_path, run="run"):
    exp = load_config(cfg)
    bundle = load_data(exp.data, seed=exp.seed, base_dir=tmp_path)
    trainer = Trainer(exp, bundle, Console("quiet"), str(cfg))
    (tmp_path / run).mkdir()
    trainer.open(tmp_path / run)
    return trainer


def test_building_a_trainer_leaves_the_callers_data_as_it_was(write_config, tmp_path):
    cfg = write_config({"data": {"classes": 2}, "loss": "bce_with_logits"})
    exp = load_config(cfg)
    bundle = load_data(exp.data, seed=exp.seed, base_dir=tmp_path)
    labels = {name: getattr(bundle, name).y.copy() for name in ("train", "val")}
    trainer = Trainer(exp, bundle, Console("quiet"), str(cfg))
    for name, y in labels.items():
        got = getattr(bundle, name).y
        assert got.dtype == y.dtype and np.array_equal(got, y), name
    assert trainer.splits["train"].y.dtype == trainer.model.dtype  # 0/1 targets for the loss


def test_a_restored_state_continues_with_the_same_numbers(write_config, tmp_path):
    """Everything a checkpoint holds comes back through TrainingState: the weights,
    optimizer state, dropout generator and progress after a restore equal the saved ones."""
    cfg = write_config({"model": {"layers": [{"type": "linear", "units": 16}, "relu",
                                             {"type": "dropout", "p": 0.2},
                                             {"type": "linear", "units": "auto"}]},
                        "optimizer": {"type": "adam", "lr": 0.01},
                        "train": {"epochs": 3}})
    first = make_trainer(cfg, tmp_path, "a")
    assert first.fit() == "completed"
    arrays, meta = first.state.arrays(), first.state.meta()
    second = make_trainer(cfg, tmp_path, "b")
    second.restore(arrays, meta, None)
    assert second.progress == first.progress
    again = second.state.arrays()
    assert sorted(again) == sorted(arrays)
    for name, array in arrays.items():
        np.testing.assert_array_equal(again[name], array, err_msg=name)
    assert second.rng.random() == first.rng.random()


def test_a_float64_run_trains_resumes_and_predicts(write_config, tmp_path):
    """``model.dtype: float64`` end to end: train (diagnostics recorded), stop, resume,
    and the saved weights and predictions are float64."""
    from typer.testing import CliRunner

    from nnback.cli import app

    cfg = write_config({"model": {"dtype": "float64"}, "train": {"epochs": 14}})
    run = tmp_path / "run"

    def invoke(*args):
        return CliRunner().invoke(app, [str(a) for a in args])

    done = invoke("train", cfg, "--out", run, "-q")
    assert done.exit_code == 0, done.output
    with np.load(run / "model.npz", allow_pickle=False) as saved:
        assert {saved[k].dtype for k in saved.files if k.startswith("model/")} == {np.dtype("float64")}
    assert (run / "diagnostics.jsonl").stat().st_size > 0
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.zeros((3, 2), np.float32))
    predicted = invoke("predict", run, inputs)
    assert predicted.exit_code == 0, predicted.output
    assert len(predicted.stdout.splitlines()) == 4  # header and three rows


def test_the_console_says_when_early_stopping_ended_the_run_and_which_weights_it_kept(
        write_config, tmp_path):
    from typer.testing import CliRunner

    from nnback.cli import app

    cfg = write_config({"train": {"early_stopping": {"metric": "val_loss", "patience": 2,
                                                     "min_delta": 100.0}}})
    result = CliRunner().invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    lines = [line[20:] for line in result.stdout.splitlines()]
    assert "early stopping at epoch 3: val_loss did not improve for 2 evaluations" in lines
    kept = [line for line in lines
            if line.startswith("keeping the weights of epoch 1, step 8 (best val_loss ")]
    assert len(kept) == 1


@pytest.mark.parametrize("schedule", [{"type": "constant"}, {"type": "constant", "warmup_epochs": 1},
                                      {"type": "cosine", "warmup_epochs": 1}])
def test_every_step_uses_its_scheduled_learning_rate(write_config, tmp_path, schedule, monkeypatch):
    """A constant rate is set once; warm-up and decaying schedules set it before each step."""
    cfg = write_config({"schedule": schedule, "train": {"epochs": 3}})
    trainer = make_trainer(cfg, tmp_path)
    used = []
    step = trainer.optimizer.step
    monkeypatch.setattr(trainer.optimizer, "step", lambda: (used.append(trainer.optimizer.lr), step()))
    assert trainer.fit() == "completed"
    assert used == [trainer.lr_at(s) for s in range(trainer.total_steps)]
    assert (len(set(used)) == 1) == (schedule == {"type": "constant"})
