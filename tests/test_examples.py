"""The shipped example configs validate and train as shipped to the accuracy they promise."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnback.cli import app
from nnback.config import load_config
from nnback.config.data_schema import DATASETS

REPO = Path(__file__).parent.parent
CONFIGS = sorted((REPO / "config").glob("*.yaml"))
# Data sets fetched on request (``nnback data fetch``), absent from a fresh clone.
FETCHED = {"mnist", "fashion-mnist"}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def fetched_data_missing(exp) -> bool:
    folder = Path(getattr(exp.data, "dir", None) or Path("data") / str(exp.data.source))
    return not any(folder.glob("*-labels-idx1-ubyte*"))


def test_every_dataset_source_is_known():
    assert FETCHED <= set(DATASETS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_validates(path):
    exp = load_config(path)
    assert exp.name == path.stem
    result = invoke("validate", path.relative_to(REPO))
    if exp.data.source in FETCHED and fetched_data_missing(exp):
        assert result.exit_code == 2
        assert result.stderr.startswith("error: data/")
        assert f"file not found; run `nnback data fetch {exp.data.source}" in result.stderr
    else:
        assert result.exit_code == 0, result.output
        assert result.stdout.endswith(f"config/{path.name}: valid\n")


# Which metric of summary.json each example must reach when trained as shipped.
EXPECTED = {
    "spiral-linear": ("train_accuracy", 0.40, 0.60),
    "spiral-hidden": ("train_accuracy", 0.97, 1.0),
    "digits-mlp": ("test_accuracy", 0.97, 1.0),
    "sine-regression": ("test_loss", 0.0, 0.02),
    "iris-csv": ("test_accuracy", 0.9, 1.0),
}


def test_every_trainable_example_has_an_expectation():
    trainable = {p.stem for p in CONFIGS if load_config(p).data.source not in FETCHED}
    assert trainable == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_trains_as_shipped(name, tmp_path):
    result = invoke("train", f"config/{name}.yaml", "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] in ("completed", "early_stopped")
    metric, low, high = EXPECTED[name]
    assert low <= summary["final"][metric] <= high, summary["final"]
