"""Binary classification with one logit and bce_with_logits, end to end."""

import json

import numpy as np
import yaml
from typer.testing import CliRunner

import nnback
from nnback.cli import app

CONFIG = {
    "name": "moons-bce",
    "seed": 0,
    "data": {"source": "moons", "points_per_class": 150, "noise": 0.1,
             "split": {"val": 0.2, "test": 0.2}, "preprocess": "standardize"},
    "model": {"mlp": {"hidden": [32, 32], "activation": "tanh"}},
    "loss": "bce_with_logits",
    "optimizer": {"type": "adam", "lr": 0.02},
    "train": {"epochs": 60, "batch_size": 32},
}


def test_binary_logit_trains_evaluates_and_predicts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    result = CliRunner().invoke(app, ["train", "cfg.yaml", "--out", "run", "--quiet"])
    assert result.exit_code == 0, result.output
    final = json.loads((tmp_path / "run" / "summary.json").read_text())["final"]
    assert final["test_accuracy"] >= 0.95

    model = nnback.load(tmp_path / "run")
    assert model.model.layers[-1].out_features == 1
    X = np.array([[-1.0, 0.5], [2.0, -0.5]])
    proba = model.predict_proba(X)
    assert proba.shape == (2, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(model.predict(X), np.asarray(model.classes)[proba.argmax(axis=1)])

    result = CliRunner().invoke(app, ["eval", "run", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test_accuracy"] == final["test_accuracy"]
