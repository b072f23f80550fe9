"""Every registered name works end to end from its spec alone: the schema validates it,
the builder builds it, ``explain`` explains it and the gradient check passes in float64.
"""

import numpy as np
import pytest
import yaml

from nnback.build import build_network, build_optimizer, build_schedule, steps_per_epoch
from nnback.commands.explain import explain_config
from nnback.commands.gradcheck import gradcheck_report
from nnback.config import load_config
from nnback.data import load_data
from nnback.registry import INITIALIZERS, LAYERS, LOSSES, OPTIMIZERS, SCHEDULES

CLASSES = {"source": "blobs", "classes": 3, "features": 3, "points_per_class": 8,
           "preprocess": "standardize"}
DATA = {
    "classification": CLASSES,
    "binary": {**CLASSES, "classes": 2},
    "regression": {"source": "linear", "samples": 24, "features": 3, "targets": 2},
}


def experiment(tmp_path, layer=None, loss="softmax_cross_entropy", task="classification", **sections):
    """A small float64 network around ``layer`` written to a YAML file; returns its path."""
    hidden = [{"type": "linear", "units": 5}] + ([layer] if layer else [])
    layers = hidden + [{"type": "linear", "units": "auto"}]
    config = {"name": "names", "seed": 3, "data": DATA[task],
              "model": {"layers": layers, "dtype": "float64"}, "loss": loss,
              "optimizer": {"type": "sgd", "lr": 0.1}, "train": {"epochs": 2, "batch_size": 8}, **sections}
    path = tmp_path / "names.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def built(path):
    """The validated experiment and the network built for its data."""
    exp = load_config(path)
    bundle = load_data(exp.data, seed=exp.seed, base_dir=path.parent)
    return exp, build_network(exp, bundle, np.random.default_rng(exp.seed), str(path))


def explained_and_gradchecked(path) -> list[str]:
    """The lines of ``nnback explain``, after asserting that the gradient check passes."""
    report, ok = gradcheck_report(path)
    assert ok, report
    return explain_config(path).splitlines()


# Image layers, each between a convolution and a flatten, on blobs as 1x4x4 images.
IMAGE_LAYERS = {"conv2d": {"type": "conv2d", "channels": 3, "kernel": [2, 3], "padding": 1},
                "maxpool2d": {"type": "maxpool2d", "kernel": 2},
                "avgpool2d": {"type": "avgpool2d", "kernel": [1, 2], "stride": 1}}


def image_experiment(tmp_path, layer):
    """``experiment`` for an image layer: Gaussian blobs read as 1x4x4 images."""
    path = experiment(tmp_path, data={**CLASSES, "features": 16, "shape": [1, 4, 4]})
    config = yaml.safe_load(path.read_text())
    config["model"]["layers"] = [{"type": "conv2d", "channels": 2, "kernel": 3, "padding": 1}, layer,
                                 {"type": "flatten"}, {"type": "linear", "units": "auto"}]
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("name", LAYERS)
def test_every_layer(name, tmp_path):
    if LAYERS[name].spec.images:
        path = image_experiment(tmp_path, IMAGE_LAYERS.get(name, name))
    else:
        path = experiment(tmp_path, {"type": name, "units": 4} if name == "linear" else name)
    exp, model = built(path)
    assert exp.model.layers[1].type == name and type(model[1]) is LAYERS[name]
    lines = explained_and_gradchecked(path)
    assert f"[1] {model[1]!r}" in lines


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss(name, tmp_path):
    path = experiment(tmp_path, "tanh", loss=name, task=LOSSES[name].spec.task)
    exp, _ = built(path)
    assert exp.loss.type == name
    lines = explained_and_gradchecked(path)
    assert f"[loss] {LOSSES[name]()!r}" in lines


@pytest.mark.parametrize("name", INITIALIZERS)
def test_every_initialiser(name, tmp_path):
    path = experiment(tmp_path, {"type": "linear", "units": 4, "init": name})
    _, model = built(path)
    assert model[1].init == name


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer(name, tmp_path):
    exp, model = built(experiment(tmp_path, optimizer={"type": name}))
    optimizer = build_optimizer(exp, model)
    assert type(optimizer) is OPTIMIZERS[name]
    before = [param.copy() for _, param, _ in model.parameters()]
    for _, _, grad in model.parameters():
        grad.fill(1.0)
    optimizer.step()
    after = [param for _, param, _ in model.parameters()]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule(name, tmp_path):
    exp = load_config(experiment(tmp_path, schedule={"type": name, "warmup_epochs": 0}))
    steps = steps_per_epoch(24, exp.train.batch_size)
    lr_at = build_schedule(exp, steps)
    rates = [lr_at(step) for step in range(exp.train.epochs * steps)]
    assert rates[0] == pytest.approx(exp.optimizer.lr) and all(0 <= r <= rates[0] for r in rates)
