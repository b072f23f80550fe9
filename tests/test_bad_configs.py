"""Bad experiment files: each gives one line naming the key to fix and exit code 2.

Every case is a small edit of one valid config (a spiral MLP), checked through
``nnback validate`` and ``nnback train`` alike: the same message, no traceback, no run
folder.
"""

import copy
import re

import pytest
import yaml
from typer.testing import CliRunner

from nnback.cli import app

BASE = {
    "name": "tiny",
    "seed": 0,
    "data": {"source": "spiral", "classes": 3, "points_per_class": 20},
    "model": {"layers": [
        {"type": "linear", "units": 16},
        {"type": "relu"},
        {"type": "dropout", "p": 0.1},
        {"type": "linear", "units": "auto"},
    ]},
    "loss": "softmax_cross_entropy",
    "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
    "train": {"epochs": 3, "batch_size": 20},
}


def edited(edit):
    cfg = copy.deepcopy(BASE)
    edit(cfg)
    return cfg


def rename(section, old, new):
    return lambda cfg: section(cfg).__setitem__(new, section(cfg).pop(old))


def put(section, key, value):
    return lambda cfg: section(cfg).__setitem__(key, value)


def drop(section, key):
    return lambda cfg: section(cfg).pop(key)


def top(cfg):
    return cfg


def optimizer(cfg):
    return cfg["optimizer"]


def train(cfg):
    return cfg["train"]


def data(cfg):
    return cfg["data"]


def layer(i):
    return lambda cfg: cfg["model"]["layers"][i]


def layers(cfg):
    return cfg["model"]["layers"]


CASES = {
    "unknown top-level key": (
        rename(top, "optimizer", "optimzer"),
        "optimzer: unknown key 'optimzer' (did you mean 'optimizer'?)"),
    "unknown optimizer key": (
        put(optimizer, "momentun", 0.9),
        "optimizer.momentun: unknown key 'momentun' (did you mean 'momentum'?)"),
    "unknown key without a close match": (
        put(optimizer, "betas", [0.9, 0.99]),
        "optimizer.betas: unknown key 'betas'; valid keys: dampening, lr, momentum, nesterov, "
        "type, weight_decay"),
    "negative lr": (
        put(optimizer, "lr", -0.1), "optimizer.lr: must be greater than 0 (got -0.1)"),
    "lr as text": (
        put(optimizer, "lr", "fast"), "optimizer.lr: must be a number (got 'fast')"),
    "zero epochs": (put(train, "epochs", 0), "train.epochs: must be at least 1 (got 0)"),
    "fractional batch size": (
        put(train, "batch_size", 3.5), "train.batch_size: must be an integer (got 3.5)"),
    "unknown layer type": (
        put(layer(1), "type", "rellu"),
        "model.layers[1].type: unknown value 'rellu' (did you mean 'relu'?); choose from avgpool2d, "
        "batchnorm, batchnorm2d, conv2d, dropout, flatten, gelu, global_avgpool2d, layernorm, "
        "leaky_relu, linear, maxpool2d, relu, sigmoid, softplus, tanh"),
    "layer without type": (
        drop(layer(2), "type"), "model.layers[2]: missing 'type' (which kind of entry this is)"),
    "dropout p above 1": (put(layer(2), "p", 1.5), "model.layers[2].p: must be less than 1 (got 1.5)"),
    "negative units": (
        put(layer(0), "units", -3),
        "model.layers[0].units: must be a positive integer or 'auto' (got -3)"),
    "linear without units": (drop(layer(0), "units"), "model.layers[0].units: required key is missing"),
    "auto units on a hidden layer": (
        put(layer(0), "units", "auto"),
        "model.layers[0].units: 'auto' is only for the last linear layer"),
    "last layer not linear": (
        lambda cfg: layers(cfg).append({"type": "relu"}),
        "model.layers: the last layer must be linear (scores for the loss), got 'relu'"),
    "last layer too wide": (
        put(layer(3), "units", 5),
        "model.layers[3].units: is 5, but the data and loss need 3 outputs (write units: auto)"),
    "layers not a list": (
        lambda cfg: cfg["model"].__setitem__("layers", "relu"), "model.layers: must be a list (got 'relu')"),
    "unknown loss": (
        put(top, "loss", "crossentropy"),
        "loss: unknown value 'crossentropy' (did you mean 'softmax_cross_entropy'?); choose from "
        "bce_with_logits, hinge, mse, softmax_cross_entropy"),
    "regression loss on classes": (
        put(top, "loss", "mse"),
        "loss: 'mse' needs regression data, but data.source gives classification targets"),
    "binary loss on three classes": (
        put(top, "loss", "bce_with_logits"),
        "loss: 'bce_with_logits' needs exactly 2 classes, the data has 3"),
    "warm-up as long as training": (
        put(top, "schedule", {"type": "cosine", "warmup_epochs": 3}),
        "schedule.warmup_epochs: must be less than train.epochs (3) (got 3)"),
    "unknown schedule": (
        put(top, "schedule", {"type": "cosin"}),
        "schedule.type: unknown value 'cosin' (did you mean 'cosine'?); choose from constant, cosine, "
        "exponential, step"),
    "nesterov without momentum": (
        lambda cfg: optimizer(cfg).update(momentum=0.0, nesterov=True),
        "optimizer.nesterov: needs momentum > 0 and dampening 0"),
    "both layers and mlp": (
        lambda cfg: cfg["model"].__setitem__("mlp", {"hidden": [8]}),
        "model: give exactly one of 'layers' or 'mlp'"),
    "neither layers nor mlp": (
        lambda cfg: cfg["model"].pop("layers"), "model: give exactly one of 'layers' or 'mlp'"),
    "early stopping without validation": (
        put(train, "early_stopping", {"metric": "val_loss"}),
        "train.early_stopping: needs a validation split: set data.split.val (e.g. 0.15)"),
    "accuracy to stop regression": (
        lambda cfg: cfg.update(
            data={"source": "sine", "samples": 50, "split": {"val": 0.2}}, loss="mse",
            train={"epochs": 3, "early_stopping": {"metric": "val_accuracy"}}),
        "train.early_stopping.metric: 'val_accuracy' needs classification data; use val_loss for "
        "regression"),
    "unknown early-stopping metric": (
        put(train, "early_stopping", {"metric": "val_acc"}),
        "train.early_stopping.metric: unknown value 'val_acc' (did you mean 'val_accuracy'?); "
        "choose from val_loss, val_accuracy"),
    "unknown data source": (
        put(data, "source", "spirall"),
        "data.source: 'spirall' is neither a built-in data set (did you mean 'spiral'?) nor a .csv "
        "or .npz file; built-in: spiral, moons, circles, xor, blobs, sine, linear, digits, mnist, "
        "fashion-mnist"),
    "unknown data key": (
        put(data, "nosie", 0.1), "data.nosie: unknown key 'nosie' (did you mean 'noise'?)"),
    "key of another data source": (
        put(data, "features", 4),
        "data.features: unknown key 'features'; valid keys: classes, noise, points_per_class, "
        "preprocess, seed, shape, source, split"),
    "split leaves no training rows": (
        put(data, "split", {"val": 0.5, "test": 0.5}),
        "data.split: val + test must be less than 1 (got 1)"),
    "unknown preprocessing": (
        put(data, "preprocess", "standardise"),
        "data.preprocess: unknown value 'standardise' (did you mean 'standardize'?); choose from "
        "none, standardize, minmax, scale"),
    "negative seed": (put(top, "seed", -1), "seed: must be at least 0 (got -1)"),
    "beta out of range": (
        put(top, "optimizer", {"type": "adam", "betas": [0.9, 1.5]}),
        "optimizer.betas[1]: must be less than 1 (got 1.5)"),
    "garbage max_time": (
        put(train, "max_time", "soon"),
        "train.max_time: invalid duration 'soon': use e.g. 90s, 30m, 2h, 1h30m or 45 (seconds)"),
    "unknown dtype": (
        lambda cfg: cfg["model"].__setitem__("dtype", "float16"),
        "model.dtype: unknown value 'float16' (did you mean 'float64'?); choose from float32, float64"),
    "missing name": (drop(top, "name"), "name: required key is missing"),
    "empty name": (put(top, "name", ""), "name: must not be empty"),
    "one beta": (
        put(top, "optimizer", {"type": "adam", "betas": [0.9]}),
        "optimizer.betas: has too few items (got [0.9])"),
    "three betas": (
        put(top, "optimizer", {"type": "adam", "betas": [0.9, 0.9, 0.9]}),
        "optimizer.betas: must have at most 2 items (got [0.9, 0.9, 0.9])"),
    "no feature columns": (
        lambda cfg: cfg.update(data={"source": "d.csv", "target": "y", "features": []}),
        "data.features: must have at least 1 item (got [])"),
    "a feature column twice": (
        lambda cfg: cfg.update(data={"source": "d.csv", "target": "y", "features": ["a", "b", "a"]}),
        "data.features: column 'a' is listed twice"),
}


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_user_error(result, lines):
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == "".join(f"error: {line}\n" for line in lines)
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_names_the_key(in_tmp, case):
    edit, message = CASES[case]
    (in_tmp / "cfg.yaml").write_text(yaml.safe_dump(edited(edit)))
    assert_user_error(invoke("validate", "cfg.yaml"), [f"cfg.yaml: {message}"])
    assert_user_error(invoke("train", "cfg.yaml"), [f"cfg.yaml: {message}"])
    assert not (in_tmp / "runs").exists()


def test_base_config_is_valid(in_tmp):
    (in_tmp / "cfg.yaml").write_text(yaml.safe_dump(BASE))
    result = invoke("validate", "cfg.yaml")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("cfg.yaml: valid\n")


def test_every_problem_reported_in_one_run(in_tmp):
    cfg = edited(lambda c: (put(optimizer, "lr", -1)(c), put(train, "epochs", 0)(c),
                            put(top, "seed", -1)(c), put(optimizer, "momentun", 0.9)(c),
                            put(layer(2), "p", 2)(c)))
    (in_tmp / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    result = invoke("validate", "cfg.yaml")
    assert_user_error(result, [
        "cfg.yaml: seed: must be at least 0 (got -1)",
        "cfg.yaml: model.layers[2].p: must be less than 1 (got 2)",
        "cfg.yaml: optimizer.lr: must be greater than 0 (got -1)",
        "cfg.yaml: optimizer.momentun: unknown key 'momentun' (did you mean 'momentum'?)",
        "cfg.yaml: train.epochs: must be at least 1 (got 0)",
    ])


@pytest.mark.parametrize("text, message", [
    ("name: x\nseed: [1\n",
     "line 3, column 1: YAML syntax error: expected ',' or ']', but got '<stream end>'"),
    ("name: x\n  seed: 1\n", "line 2, column 7: YAML syntax error: mapping values are not allowed here"),
    ("name: x\nseed: 1\nseed: 2\n",
     "line 3, column 1: YAML syntax error: key 'seed' is given twice in the same mapping"),
    ("- a\n- b\n", "the file must be a YAML mapping of sections, but it is a list"),
    ("", "the file must be a YAML mapping of sections, but it is empty"),
])
def test_unreadable_file(in_tmp, text, message):
    (in_tmp / "cfg.yaml").write_text(text)
    for command in ("validate", "train"):
        assert_user_error(invoke(command, "cfg.yaml"), [f"cfg.yaml: {message}"])


def test_missing_file(in_tmp):
    for command in ("validate", "train", "gradcheck"):
        assert_user_error(invoke(command, "nope.yaml"), ["nope.yaml: file not found"])


@pytest.mark.parametrize("override, message", [
    ("optimizer.lr", "--set optimizer.lr: expected KEY=VALUE with a dotted key, e.g. optimizer.lr=0.01"),
    ("=3", "--set =3: expected KEY=VALUE with a dotted key, e.g. optimizer.lr=0.01"),
    ("optimizer..lr=1",
     "--set optimizer..lr=1: expected KEY=VALUE with a dotted key, e.g. optimizer.lr=0.01"),
    ("optimizer.lr=abc", "cfg.yaml: optimizer.lr: must be a number (got 'abc')"),
    ("train.epochs=2.5", "cfg.yaml: train.epochs: must be an integer (got 2.5)"),
    ("model.layers.7.units=3",
     "--set model.layers.7.units=3: model.layers.7: no list item 7 (the list has 4)"),
    ("model.mlp.hidden.0=8",  # this config lists its layers
     "--set model.mlp.hidden.0=8: model.mlp.hidden: not a list in the config, so it has no item 0"),
    ("train.epochs=[1", "--set train.epochs: cannot parse value '[1': line 1, column 3: YAML syntax "
                        "error: expected ',' or ']', but got '<stream end>'"),
    ("name.first=1", "cfg.yaml: name: must be a string (got {'first': 1})"),
    ("optimizer.lr.x=1", "cfg.yaml: optimizer.lr: must be a number (got {'x': 1})"),
])
def test_bad_override(in_tmp, override, message):
    (in_tmp / "cfg.yaml").write_text(yaml.safe_dump(BASE))
    for command in ("validate", "train"):
        assert_user_error(invoke(command, "cfg.yaml", "--set", override), [message])


def test_bad_max_time_option(in_tmp):
    (in_tmp / "cfg.yaml").write_text(yaml.safe_dump(BASE))
    result = invoke("train", "cfg.yaml", "--max-time", "soon", "--out", "run")
    assert_user_error(result, [
        "--max-time: invalid duration 'soon': use e.g. 90s, 30m, 2h, 1h30m or 45 (seconds)"])
    assert not (in_tmp / "run").exists()


def test_resume_needs_out(in_tmp):
    (in_tmp / "cfg.yaml").write_text(yaml.safe_dump(BASE))
    assert_user_error(invoke("train", "cfg.yaml", "--resume"),
                      ["--resume and --skip-if-done need a fixed run folder: add --out DIR"])


IMAGES = {
    "name": "tiny-cnn",
    "data": {"source": "digits", "shape": [1, 8, 8], "split": {"val": 0.2}},
    "model": {"layers": [
        {"type": "conv2d", "channels": 4, "kernel": 3, "padding": 1},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "flatten"},
        {"type": "linear", "units": "auto"},
    ]},
    "loss": "softmax_cross_entropy",
    "optimizer": {"type": "sgd", "lr": 0.1},
    "train": {"epochs": 1},
}


def image_layer(i):
    return lambda cfg: cfg["model"]["layers"][i]


IMAGE_CASES = {
    "kernel larger than the padded input": (
        put(image_layer(0), "kernel", 11),
        "cfg.yaml: model.layers[0]: Conv2d(1, 4, kernel_size=11, padding=1): the 11x11 window is larger "
        "than its input 10x10 (padding 1x1); input (N, 1, 8, 8)"),
    "pooling leaves no pixels": (
        put(image_layer(2), "kernel", [2, 9]),
        "cfg.yaml: model.layers[2]: MaxPool2d(kernel_size=(2, 9)): the 2x9 window is larger than its "
        "input 8x8; input (N, 4, 8, 8)"),
    "linear on images without flatten": (
        lambda cfg: cfg["model"]["layers"].pop(3),
        "cfg.yaml: model.layers[3]: Linear needs flat input (N, D), got (N, 4, 4, 4): flatten it first"),
    "image layer without an image shape": (
        put(top, "data", {"source": "spiral"}),
        "cfg.yaml: model.layers[0]: conv2d needs images, but the data rows have no image shape: "
        "give data.shape: [C, H, W] (2 values per row)"),
    "batchnorm2d on flat rows": (
        lambda cfg: cfg["model"]["layers"].insert(4, {"type": "batchnorm2d"}),
        "cfg.yaml: model.layers[4]: BatchNorm2d(64, eps=1e-05, momentum=0.1) needs images "
        "(N, C, H, W), got (N, 64)"),
    "zero kernel": (
        put(image_layer(0), "kernel", 0), "cfg.yaml: model.layers[0].kernel: must be at least 1 (got 0)"),
    "negative padding": (
        put(image_layer(0), "padding", -1), "cfg.yaml: model.layers[0].padding: must be at least 0 (got -1)"),
    "zero channels": (
        put(image_layer(0), "channels", 0),
        "cfg.yaml: model.layers[0].channels: must be greater than 0 (got 0)"),
    "unknown conv option": (
        put(image_layer(0), "filters", 8),
        "cfg.yaml: model.layers[0].filters: unknown key 'filters'; valid keys: bias, channels, init, "
        "kernel, padding, stride, type"),
    "pool without kernel": (
        lambda cfg: cfg["model"]["layers"][2].pop("kernel"),
        "cfg.yaml: model.layers[2].kernel: required key is missing"),
    "shape of the wrong size": (
        put(data, "shape", [1, 9, 9]),
        "data.shape: [1, 9, 9] is 81 values per row, but the data has 64 features per row"),
    "shape with a zero": (
        put(data, "shape", [1, 0, 8]), "cfg.yaml: data.shape[1]: must be at least 1 (got 0)"),
    "per-channel scaling": (
        put(data, "preprocess", {"type": "scale", "factor": 0.5, "per_channel": True}),
        "cfg.yaml: data.preprocess.per_channel: only for standardize and minmax (type is scale)"),
    "per-channel without images": (
        lambda cfg: cfg.update(data={"source": "spiral", "preprocess": {"type": "standardize",
                                                                         "per_channel": True}},
                               model={"mlp": {"hidden": [4]}}),
        "data.preprocess.per_channel: needs images: give data.shape: [C, H, W]"),
}


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_bad_image_config_names_the_layer_and_shapes(in_tmp, case):
    edit, message = IMAGE_CASES[case]
    cfg = copy.deepcopy(IMAGES)
    edit(cfg)
    (in_tmp / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert_user_error(invoke("validate", "cfg.yaml"), [message])
    assert_user_error(invoke("train", "cfg.yaml"), [message])
    assert not (in_tmp / "runs").exists()


def test_image_base_config_is_valid(in_tmp):
    (in_tmp / "cfg.yaml").write_text(yaml.safe_dump(IMAGES))
    result = invoke("validate", "cfg.yaml")
    assert result.exit_code == 0, result.output
    assert re.search(r"^3 Flatten\(\)\s+\(N, 64\)\s+0\s+32\.0 KiB$", result.stdout, re.MULTILINE)
