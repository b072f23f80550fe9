"""Saved weights in use: ``nnback.load``, ``nnback predict`` and ``nnback eval`` on a run
trained from a CSV file with string labels and standardised features."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import nnback
from nnback.cli import app
from nnback.config import load_config
from nnback.data import load_data

SPECIES = ["cat", "dog", "emu"]
EXPERIMENT = {
    "name": "animals",
    "seed": 1,
    "data": {"source": "animals.csv", "target": "species", "split": {"val": 0.2, "test": 0.2},
             "preprocess": "standardize"},
    "model": {"mlp": {"hidden": [8]}},
    "loss": "softmax_cross_entropy",
    "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
    "train": {"epochs": 10, "batch_size": 16},
}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def animals(n_per_class: int, rng) -> tuple[np.ndarray, list[str]]:
    """Three separable classes whose features differ in scale by 100x: standardising matters."""
    centres = np.array([[0.0, 10.0, 100.0], [6.0, 4.0, 120.0], [12.0, -2.0, 140.0]])
    X = np.concatenate([rng.normal(c, [1.0, 1.0, 2.0], size=(n_per_class, 3)) for c in centres])
    return X.round(4), [name for name in SPECIES for _ in range(n_per_class)]


def write_csv(path: Path, X, labels=None):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "b", "c"] + (["species"] if labels is not None else []))
        for i, row in enumerate(X):
            writer.writerow([f"{v:.4f}" for v in row] + ([labels[i]] if labels is not None else []))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder trained on animals.csv, and the folder it was trained in."""
    folder = tmp_path_factory.mktemp("animals")
    X, labels = animals(50, np.random.default_rng(0))
    write_csv(folder / "animals.csv", X, labels)
    (folder / "animals.yaml").write_text(yaml.safe_dump(EXPERIMENT))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        result = invoke("train", "animals.yaml", "--out", "run", "-q")
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def in_folder(trained, monkeypatch):
    monkeypatch.chdir(trained)
    return trained


def raw_rows(n_per_class=4, seed=9):
    return animals(n_per_class, np.random.default_rng(seed))


def test_load_predicts_class_names(in_folder):
    model = nnback.load("run")
    X, labels = raw_rows()
    predicted = model.predict(X)
    assert list(predicted) == labels
    assert model.classes == SPECIES
    proba = model.predict_proba(X)
    assert proba.shape == (12, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert [SPECIES[i] for i in proba.argmax(axis=1)] == list(predicted)


def test_load_accepts_the_run_model_or_a_checkpoint(in_folder):
    X, _ = raw_rows()
    expected = nnback.load("run").predict_proba(X)
    for path in ("run/model.npz", "run/checkpoints/last.npz"):
        np.testing.assert_array_equal(nnback.load(path).predict_proba(X), expected)


def test_predict_applies_the_training_standardisation(in_folder):
    exp = load_config("run/config.yaml")
    raw = exp.data.model_copy(update={"preprocess": exp.data.preprocess.model_copy(update={"type": "none"})})
    train = load_data(raw, seed=exp.seed, base_dir=Path.cwd()).train.X.astype(np.float64)
    mean, std = train.mean(axis=0), train.std(axis=0)
    X, _ = raw_rows()
    model = nnback.load("run")
    by_hand = model.scores((X - mean) / std, preprocessed=True)
    np.testing.assert_allclose(model.scores(X), by_hand, rtol=1e-5, atol=1e-5)


def test_predict_cli_writes_names_and_probabilities(in_folder):
    X, labels = raw_rows()
    write_csv(in_folder / "new.csv", X)
    result = invoke("predict", "run", "new.csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["prediction", "p_cat", "p_dog", "p_emu"]
    assert [row[0] for row in rows[1:]] == labels
    proba = np.array([[float(v) for v in row[1:]] for row in rows[1:]])
    np.testing.assert_allclose(proba, nnback.load("run").predict_proba(X), rtol=1e-5)


def test_predict_cli_ignores_the_target_column_and_writes_a_file(in_folder):
    X, labels = raw_rows()
    write_csv(in_folder / "labelled.csv", X, labels)
    result = invoke("predict", "run", "labelled.csv", "-o", "out.csv")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    rows = list(csv.reader(open(in_folder / "out.csv")))
    assert [row[0] for row in rows[1:]] == labels


def test_predict_cli_reads_npy(in_folder):
    X, labels = raw_rows()
    np.save(in_folder / "new.npy", X)
    result = invoke("predict", "run", "new.npy")
    assert result.exit_code == 0, result.output
    assert [line.split(",")[0] for line in result.stdout.splitlines()[1:]] == labels


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_eval_matches_the_final_metrics(in_folder, split):
    final = json.loads((in_folder / "run" / "summary.json").read_text())["final"]
    result = invoke("eval", "run", "--split", split, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics[f"{split}_loss"] == pytest.approx(final[f"{split}_loss"], rel=1e-9)
    assert metrics[f"{split}_accuracy"] == final[f"{split}_accuracy"]
    assert metrics["samples"] == {"train": 90, "val": 30, "test": 30}[split]


def test_eval_text_output(in_folder):
    final = json.loads((in_folder / "run" / "summary.json").read_text())["final"]
    result = invoke("eval", "run")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"test_loss {final['test_loss']:.4f} "
                               f"test_accuracy {final['test_accuracy']:.4f} test_macro_precision ")
    assert lines[0].endswith(" samples 30")
    assert lines[2].split() == ["class", "precision", "recall", "f1", "support"]
    assert [line.split()[0] for line in lines[3:6]] == SPECIES
    assert sum(int(line.split()[-1]) for line in lines[3:6]) == 30
    assert lines[7] == "confusion matrix (rows: true class, columns: predicted)"
    assert lines[8].split() == SPECIES
    matrix = [[int(v) for v in line.split()[1:]] for line in lines[9:12]]
    assert sum(map(sum, matrix)) == 30
    assert sum(matrix[i][i] for i in range(3)) == round(final["test_accuracy"] * 30)


def test_eval_on_a_labelled_file(in_folder):
    X, labels = raw_rows(seed=4)
    write_csv(in_folder / "more.csv", X, labels)
    result = invoke("eval", "run", "--data", "more.csv", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["data_accuracy"] == 1.0 and metrics["samples"] == 12
    assert metrics["confusion_matrix"] == [[4, 0, 0], [0, 4, 0], [0, 0, 4]]


def test_eval_refuses_a_split_of_a_labelled_file(in_folder):
    X, labels = raw_rows(seed=4)
    write_csv(in_folder / "more.csv", X, labels)
    result = invoke("eval", "run", "--data", "more.csv", "--split", "val")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --split val with --data: --data evaluates every row of its file; give one or the other"]


def test_eval_reports_the_confusion_and_per_class_scores(in_folder):
    X, labels = raw_rows(seed=4)  # predicted right, as above; one cat relabelled dog
    labels[0] = "dog"
    write_csv(in_folder / "more.csv", X, labels)
    result = invoke("eval", "run", "--data", "more.csv", "--format", "json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["classes"] == SPECIES
    assert metrics["confusion_matrix"] == [[3, 0, 0], [1, 4, 0], [0, 0, 4]]
    assert metrics["per_class"]["cat"] == {"precision": 0.75, "recall": 1.0, "f1": 6 / 7, "support": 3}
    assert metrics["per_class"]["dog"] == {"precision": 1.0, "recall": 0.8, "f1": pytest.approx(8 / 9),
                                           "support": 5}
    assert metrics["per_class"]["emu"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 4}
    assert metrics["data_macro_precision"] == pytest.approx(2.75 / 3)
    assert metrics["data_macro_recall"] == pytest.approx(2.8 / 3)
    assert metrics["data_macro_f1"] == pytest.approx((6 / 7 + 8 / 9 + 1) / 3)
    assert metrics["data_accuracy"] == 11 / 12


def test_eval_rejects_unknown_labels(in_folder):
    X, _ = raw_rows()
    write_csv(in_folder / "odd.csv", X, ["cat", "yak"] * (len(X) // 2))
    result = invoke("eval", "run", "--data", "odd.csv")
    assert result.exit_code == 2
    assert result.stderr == ("error: odd.csv: row 3, column 'species': label 'yak' is not one of the classes "
                             "seen in training (cat, dog, emu)\n")


def test_eval_rejects_a_file_it_cannot_read_as_labelled(in_folder):
    np.save(in_folder / "x.npy", np.zeros((3, 2)))
    result = invoke("eval", "run", "--data", "x.npy")
    assert result.exit_code == 2
    assert result.stderr == ("error: x.npy: cannot read as a labelled file: 'x.npy': npy files "
                             "hold one array; give a pair {x: ..., y: ...}\n")
