"""Turn a validated experiment into engine objects: model, loss, optimizer, schedule.

Shapes that depend on the data (the first layer's input size, ``units: auto``) are
resolved here; a last layer that does not fit the data or the loss is a ConfigError
naming the key.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from nnback.errors import ConfigError
from nnback.model import Sequential
from nnback.registry import LAYERS, LOSSES, OPTIMIZERS
from nnback.schedules import make_schedule

LOSS_TASK = {
    "softmax_cross_entropy": "classification",
    "hinge": "classification",
    "bce_with_logits": "classification",
    "mse": "regression",
}
EVAL_BATCH = 4096  # rows per forward pass when evaluating or predicting


def output_units(exp, task: str, n_outputs: int, source: str) -> int:
    """Units of the last layer: classes, 1 for binary cross-entropy, or regression targets.

    Raises:
        ConfigError: the loss, or the early-stopping metric, does not fit the task.
    """
    loss = exp.loss.type
    if LOSS_TASK[loss] != task:
        raise ConfigError(
            f"{source}: loss: '{loss}' needs {LOSS_TASK[loss]} data, but data.source gives {task} targets"
        )
    stopping = exp.train.early_stopping
    if stopping is not None and stopping.metric == "val_accuracy" and task != "classification":
        raise ConfigError(
            f"{source}: train.early_stopping.metric: 'val_accuracy' needs classification data; "
            f"use val_loss for {task}"
        )
    if loss == "bce_with_logits":
        if n_outputs != 2:
            raise ConfigError(
                f"{source}: loss: 'bce_with_logits' needs exactly 2 classes, the data has {n_outputs}"
            )
        return 1
    return n_outputs


def build_model(exp, n_features: int, units_out: int, rng: np.random.Generator, source: str) -> Sequential:
    """The configured network for ``n_features`` inputs, parameters drawn from ``rng``."""
    specs = exp.model.layer_specs()
    key = "model.layers" if exp.model.layers is not None else "model.mlp"
    dtype = np.dtype(exp.model.dtype)
    layers, width = [], n_features
    last_linear = max(i for i, spec in enumerate(specs) if spec.type == "linear")
    for i, spec in enumerate(specs):
        kwargs = spec.model_dump(exclude={"type"})
        if spec.type == "linear":
            units = kwargs.pop("units")
            if i == last_linear and units not in ("auto", units_out):
                raise ConfigError(
                    f"{source}: {key}[{i}].units: is {units}, but the data and loss need {units_out} "
                    f"outputs (write units: auto)"
                )
            kwargs["out_features"] = units_out if units == "auto" else units
        layer = _construct(LAYERS[spec.type], kwargs, width, dtype, rng)
        width = layer.output_features(width)
        layers.append(layer)
    return Sequential(layers)


def build_network(exp, data, rng: np.random.Generator, source: str) -> Sequential:
    """The configured network for ``data`` (a DataBundle or DataMeta: task, feature and
    output counts); the last layer sized by ``output_units``."""
    units = output_units(exp, data.task, data.n_outputs, source)
    return build_model(exp, data.n_features, units, rng, source)


def _construct(cls, kwargs: dict, width: int, dtype, rng):
    accepted = inspect.signature(cls).parameters
    extra = {"in_features": width, "num_features": width, "dtype": dtype, "rng": rng}
    kwargs.update((name, value) for name, value in extra.items() if name in accepted)
    return cls(**kwargs)


def build_loss(exp):
    """The configured loss object."""
    return LOSSES[exp.loss.type](**exp.loss.model_dump(exclude={"type"}))


def loss_targets(exp, y: np.ndarray, dtype) -> np.ndarray:
    """Labels as the loss wants them: 0/1 floats of the model's dtype for binary
    cross-entropy, class indices or regression targets unchanged otherwise."""
    return y.astype(dtype) if exp.loss.type == "bce_with_logits" else y


def predicted_classes(scores: np.ndarray) -> np.ndarray:
    """Class indices from scores: argmax, or ``score > 0`` for one binary logit.

    scores: (N, C) -> (N,) int64.
    """
    if scores.shape[1] == 1:
        return (scores[:, 0] > 0).astype(np.int64)
    return scores.argmax(axis=1)


def build_optimizer(exp, model: Sequential):
    """The configured optimizer over ``model``'s parameters."""
    spec = exp.optimizer.model_dump(exclude={"type"})
    if spec.get("weight_decay", 0) is None:
        del spec["weight_decay"]  # the optimizer's own default (adam 0, adamw 0.01)
    return OPTIMIZERS[exp.optimizer.type](model.parameters(), **spec)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return math.ceil(n_train / batch_size)


def build_schedule(exp, steps_in_epoch: int):
    """``lr_at(step) -> float`` for the configured schedule, in optimizer steps."""
    spec = exp.schedule.model_dump(exclude={"type", "warmup_epochs"})
    for name in [k for k in spec if k.endswith("_epochs")]:
        spec[name.removesuffix("_epochs") + "_size"] = max(1, round(spec.pop(name) * steps_in_epoch))
    if exp.schedule.type == "exponential":
        spec["gamma"] = spec["gamma"] ** (1.0 / steps_in_epoch)
    return make_schedule(
        exp.schedule.type,
        base_lr=exp.optimizer.lr,
        total_steps=exp.train.epochs * steps_in_epoch,
        warmup_steps=round(exp.schedule.warmup_epochs * steps_in_epoch),
        **spec,
    )
