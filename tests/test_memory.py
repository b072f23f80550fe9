"""How big a network is, computed once (``nnback.memory``, ``build``'s parameter count):
the table ``validate`` prints, the pre-run check of ``train``, the size guard of a
saved model and the evaluation batch all read it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from nnback.build import NetworkTooLarge, build_loss, build_model
from nnback.commands.validate import layer_table
from nnback.config import load_config
from nnback.errors import CheckpointError, ConfigError
from nnback.memory import EVAL_MEMORY, evaluation_rows, layer_memory
from nnback.runfolder.checkpoint import load_checkpoint, save_checkpoint
from nnback.runfolder.saved_model import load
from nnback.train.evaluate import evaluate
from nnback.train.plan import load_training_data, trainable_network

CONFIG = Path(__file__).parent.parent / "config"


def digits_cnn(tmp_path, layers=None, **train) -> Path:
    """config/digits-cnn.yaml, with other layers or train settings, written to tmp_path."""
    cfg = yaml.safe_load((CONFIG / "digits-cnn.yaml").read_text())
    if layers is not None:
        cfg["model"]["layers"] = layers
    cfg["train"].update(epochs=2, **train)
    path = tmp_path / "cnn.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def build(exp, n_features, shape, max_parameters=None):
    return build_model(exp, n_features, 10, np.random.default_rng(0), "cfg", shape, max_parameters)


@pytest.mark.parametrize("layers", [
    None,
    [{"type": "conv2d", "channels": 4, "kernel": [3, 2], "stride": 2, "bias": False}, "batchnorm2d",
     "relu", "flatten", {"type": "linear", "units": 12}, "batchnorm", "layernorm",
     {"type": "linear", "units": "auto", "bias": False}],
])
def test_the_parameter_count_before_building_is_the_built_networks(tmp_path, layers):
    exp = load_config(digits_cnn(tmp_path, layers))
    model = build(exp, 64, (1, 8, 8))
    assert build(exp, 64, (1, 8, 8), max_parameters=model.num_parameters()).num_parameters() \
        == model.num_parameters()
    with pytest.raises(NetworkTooLarge) as refused:
        build(exp, 64, (1, 8, 8), max_parameters=model.num_parameters() - 1)
    last = max(i for i, layer in enumerate(model.layers) if layer.params)
    assert refused.value.parameters == model.num_parameters()
    assert refused.value.key.startswith(f"model.layers[{last}]")


def test_the_memory_table_follows_the_layers_output_shapes_and_im2col_columns(tmp_path):
    exp = load_config(digits_cnn(tmp_path))
    model = build(exp, 64, (1, 8, 8))
    table = layer_memory(model, 64)
    assert [row.shape for row in table] == [(1, 8, 8), (16, 8, 8), (16, 8, 8), (16, 4, 4), (32, 4, 4),
                                            (32, 4, 4), (32, 2, 2), (128,), (128,), (10,)]
    conv = model.layers[3]
    columns = math.prod(conv.columns_shape((16, 4, 4), 5)) // 5
    assert table[4].eval_values == 32 * 4 * 4 + columns
    assert table[4].train_values == 2 * table[4].eval_values
    assert sum(row.parameters for row in table) == model.num_parameters()
    # validate prints the same numbers, for a batch
    assert [memory for *_, memory in layer_table(model, 64, 7)] == [7 * row.train_values * 4 for row in table]


@pytest.mark.parametrize("free, change, key", [
    (8 << 20, {"layers": {3: {"type": "conv2d", "channels": 100_000, "kernel": 3, "padding": 1}}},
     "model.layers[3].channels"),
    (96 << 20, {"batch_size": 2048}, "train.batch_size"),
])
def test_a_convnet_too_large_for_memory_is_refused_before_its_run_folder(
        tmp_path, monkeypatch, nnback_cli, free, change, key):
    monkeypatch.setattr("nnback.train.plan.available_memory", lambda: free)
    layers = yaml.safe_load((CONFIG / "digits-cnn.yaml").read_text())["model"]["layers"]
    for i, layer in change.pop("layers", {}).items():
        layers[i] = layer
    cfg = digits_cnn(tmp_path, layers, **change)
    for command in (["validate", cfg], ["train", cfg, "--out", tmp_path / "run"]):
        result = nnback_cli(*command)
        assert result.returncode == 2
        [line] = result.stderr.splitlines()
        assert line.startswith(f"error: {cfg}: {key}: training needs ~")
        assert line.endswith(f"only {free >> 20}.0 MiB is free")
    assert not (tmp_path / "run").exists()


def test_batch_statistics_need_more_than_one_value_per_channel(tmp_path):
    # a 1x1 image per channel: a batch of one sample has one value per channel
    tiny = [{"type": "conv2d", "channels": 4, "kernel": 8}, "batchnorm2d", "flatten",
            {"type": "linear", "units": "auto"}]
    exp = load_config(digits_cnn(tmp_path, tiny, batch_size=1))
    bundle = load_training_data(exp, "cfg")
    with pytest.raises(ConfigError, match=r"^cfg: train.batch_size: batches of 1 sample have no batch "
                                          r"statistics for batchnorm2d \(model.layers\[1\]\)"):
        trainable_network(exp, bundle, np.random.default_rng(0), "cfg")
    # with 8x8 pixels per channel a batch of one sample has 64 values per channel
    exp = load_config(digits_cnn(tmp_path, [tiny[0] | {"kernel": 1}, *tiny[1:]], batch_size=1))
    trainable_network(exp, bundle, np.random.default_rng(0), "cfg")


def test_the_evaluation_batch_is_sized_from_the_memory_per_sample(tmp_path):
    exp = load_config(CONFIG / "mnist-cnn.yaml")
    model = build(exp, 784, (1, 28, 28))
    per_row = sum(row.eval_values for row in layer_memory(model, 784)) * 4
    rows = evaluation_rows(model, 784, 64)
    assert rows * per_row <= EVAL_MEMORY < (rows + 1) * per_row
    # a training batch larger than that lets evaluation take as much as it does
    train_bytes = 2000 * sum(row.train_values for row in layer_memory(model, 784)) * 4
    assert train_bytes > EVAL_MEMORY
    big = evaluation_rows(model, 784, 2000)
    assert big * per_row <= train_bytes < (big + 1) * per_row
    exp = load_config(CONFIG / "digits-mlp.yaml")
    assert evaluation_rows(build(exp, 64, None), 64, 64) == 4096


def test_evaluation_in_small_batches_gives_the_metrics_of_one_batch(tmp_path):
    exp = load_config(digits_cnn(tmp_path))
    bundle = load_training_data(exp, "cfg")
    model = build(exp, 64, (1, 8, 8))
    loss_fn = build_loss(exp)
    whole = evaluate(model, loss_fn, bundle.train, True, len(bundle.train))
    parts = evaluate(model, loss_fn, bundle.train, True, 100)
    assert parts["accuracy"] == whole["accuracy"]
    assert parts["loss"] == pytest.approx(whole["loss"], rel=1e-6)


def test_a_saved_convnet_asking_for_more_weights_than_stored_is_refused(tmp_path, nnback_cli):
    cfg = digits_cnn(tmp_path)
    assert nnback_cli("train", cfg, "--out", tmp_path / "run").returncode == 0
    path = tmp_path / "run" / "model.npz"
    arrays, meta = load_checkpoint(path)
    meta["config"]["model"]["layers"][3]["channels"] = 10 ** 8
    save_checkpoint(path, arrays, meta)
    with pytest.raises(CheckpointError, match=r"weights do not fit the saved config: its layers up to "
                                              r"model.layers\[3\].channels need more values than the"):
        load(path)
