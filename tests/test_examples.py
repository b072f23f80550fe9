"""The shipped example configs validate and train as shipped to the accuracy they promise."""

import json
import re
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
    "digits-cnn": ("test_accuracy", 0.8, 1.0),  # after 2 epochs (see SHORTENED)
}
# Examples trained for 2 epochs here; their accuracy as shipped is measured by
# scripts/bench.py --convnets and stated in the README.
SHORTENED = {"digits-cnn"}


def test_every_trainable_example_has_an_expectation():
    trainable = {p.stem for p in CONFIGS if load_config(p).data.source not in FETCHED}
    assert trainable == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_trains_as_shipped(name, tmp_path):
    shorten = ["--set", "train.epochs=2"] if name in SHORTENED else []
    result = invoke("train", f"config/{name}.yaml", "--out", tmp_path / "run", "--quiet", *shorten)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] in ("completed", "early_stopped")
    metric, low, high = EXPECTED[name]
    assert low <= summary["final"][metric] <= high, summary["final"]


def write_synthetic_mnist(folder: Path, n_train: int = 96, n_test: int = 32):
    """The four gzipped IDX files of an MNIST look-alike: 28x28 uint8 images whose
    class is which of ten horizontal bands is bright, so a ConvNet can learn it."""
    import gzip

    import numpy as np

    from nnback.data.fetch import IDX_FILES
    from nnback.data.idx import idx_bytes

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for part, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n, dtype=np.uint8) % 10
        images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label:4 + 2 * label] = 255
        (folder / IDX_FILES[f"{part}_images"]).write_bytes(gzip.compress(idx_bytes(images)))
        (folder / IDX_FILES[f"{part}_labels"]).write_bytes(gzip.compress(idx_bytes(labels)))


def test_mnist_cnn_validates_and_trains_on_synthetic_idx_files(tmp_path):
    data = tmp_path / "mnist"
    write_synthetic_mnist(data)
    where = ["--set", f"data.dir={data}"]
    result = invoke("validate", "config/mnist-cnn.yaml", *where)
    assert result.exit_code == 0, result.output
    assert re.search(r"^input\s+\(N, 1, 28, 28\)", result.stdout, re.MULTILINE)  # the IDX shape
    assert re.search(r"^6 Flatten\(\)\s+\(N, 400\)", result.stdout, re.MULTILINE)
    result = invoke("train", "config/mnist-cnn.yaml", *where, "--set", "train.epochs=2",
                    "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] in ("completed", "early_stopped")
    predicted = invoke("predict", tmp_path / "run", data / "t10k-images-idx3-ubyte.gz")
    assert predicted.exit_code == 0, predicted.output
    assert len(predicted.stdout.splitlines()) == 1 + 32  # header, one row per image


def test_saved_convnet_with_huge_layers_is_refused_before_building(tmp_path):
    from nnback.runfolder.checkpoint import load_checkpoint, save_checkpoint

    data = tmp_path / "mnist"
    write_synthetic_mnist(data)
    result = invoke("train", "config/mnist-cnn.yaml", "--set", f"data.dir={data}", "--set",
                    "train.epochs=2", "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    for index, key in ((0, "channels"), (7, "units")):  # a convolution; the linear after flatten
        arrays, meta = load_checkpoint(tmp_path / "run" / "model.npz")
        meta["config"]["model"]["layers"][index][key] = 10**9
        edited = tmp_path / f"{key}.npz"
        save_checkpoint(edited, arrays, meta)
        refused = invoke("predict", edited, data / "t10k-images-idx3-ubyte.gz")
        assert refused.exit_code == 2
        assert "weights do not fit the saved config" in refused.stderr
        assert "more values than the" in refused.stderr
