"""Evaluation metrics: hand-computed cases, scikit-learn as an oracle, and ``nnback eval``."""

import json
import math

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import nnback
from nnback.cli import app
from nnback.metrics import class_report, confusion_matrix, regression_report


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_confusion_matrix_and_class_report_by_hand():
    # class 3 has neither samples nor predictions: its precision, recall and F1 are 0
    confusion = confusion_matrix(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 1, 0, 1, 2, 2]), 4)
    assert confusion.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    report = class_report(confusion)
    assert report["precision"] == [1.0, 0.5, 0.5, 0.0]
    assert report["recall"] == pytest.approx([2 / 3, 0.5, 1.0, 0.0], rel=1e-15)
    assert report["f1"] == pytest.approx([0.8, 0.5, 2 / 3, 0.0], rel=1e-15)
    assert report["support"] == [3, 2, 1, 0]
    assert report["macro_precision"] == 0.5
    assert report["macro_recall"] == pytest.approx(13 / 24, rel=1e-15)
    assert report["macro_f1"] == pytest.approx(59 / 120, rel=1e-15)


def test_regression_report_by_hand():
    y = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [4.0, 5.0]])
    pred = np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0], [4.0, 5.0]])  # errors 0, 1, -1, 0
    single = regression_report(y[:, 0], pred[:, 0])
    assert single == pytest.approx({"mae": 0.5, "rmse": math.sqrt(0.5), "r2": 1 - 2 / 5}, rel=1e-15)
    # the constant second target, predicted exactly, has R² 1 and RMSE 0
    both = regression_report(y, pred)
    assert both == pytest.approx({"mae": 0.25, "rmse": math.sqrt(0.5) / 2, "r2": 0.8}, rel=1e-15)
    assert regression_report(np.ones(3), np.zeros(3))["r2"] == 0.0


def test_metrics_agree_with_scikit_learn():
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    y_pred[y_pred == 4] = 3  # class 4 never predicted
    confusion = confusion_matrix(y_true, y_pred, 5)
    np.testing.assert_array_equal(confusion, sklearn.confusion_matrix(y_true, y_pred, labels=range(5)))
    report = class_report(confusion)
    p, r, f, s = sklearn.precision_recall_fscore_support(y_true, y_pred, labels=range(5), zero_division=0)
    np.testing.assert_allclose([report["precision"], report["recall"], report["f1"]], [p, r, f], rtol=1e-12)
    assert report["support"] == s.tolist()
    macro = sklearn.precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    assert [report["macro_precision"], report["macro_recall"], report["macro_f1"]] == pytest.approx(
        macro[:3], rel=1e-12)
    y, out = rng.standard_normal((50, 3)), rng.standard_normal((50, 3))
    assert regression_report(y, out) == pytest.approx({
        "mae": sklearn.mean_absolute_error(y, out), "rmse": sklearn.root_mean_squared_error(y, out),
        "r2": sklearn.r2_score(y, out)}, rel=1e-12)


SINE = {
    "name": "sine", "seed": 0,
    "data": {"source": "sine", "samples": 60, "split": {"val": 0.2, "test": 0.2}},
    "model": {"layers": [{"type": "linear", "units": 8}, "tanh", {"type": "linear", "units": "auto"}]},
    "loss": "mse", "optimizer": {"type": "adam", "lr": 0.01}, "train": {"epochs": 2, "batch_size": 16},
}


def test_eval_of_a_regression_run_reports_mae_rmse_and_r2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sine.yaml").write_text(yaml.safe_dump(SINE))
    assert invoke("train", "sine.yaml", "--out", "run", "-q").exit_code == 0
    result = invoke("eval", "run", "--format", "json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert set(metrics) == {"test_loss", "test_mae", "test_rmse", "test_r2", "samples"}
    test = nnback.data.load_data(nnback.config.load_config("sine.yaml").data, seed=0, base_dir=tmp_path).test
    expected = regression_report(test.y, nnback.load("run").predict(test.X, preprocessed=True))
    assert [metrics["test_mae"], metrics["test_rmse"], metrics["test_r2"]] == pytest.approx(
        [expected["mae"], expected["rmse"], expected["r2"]], rel=1e-6)
    assert metrics["test_loss"] == pytest.approx(metrics["test_rmse"] ** 2, rel=1e-5)  # mse, one target
    text = invoke("eval", "run").stdout
    assert text.startswith("test_loss ") and " test_r2 " in text and text.endswith(" samples 12\n")
