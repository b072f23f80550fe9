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
from nnback.registry import LAYERS, LOSSES, OPTIMIZERS, SCHEDULES
from nnback.schedules import make_schedule

EVAL_BATCH = 4096  # rows per forward pass when evaluating or predicting


def output_units(exp, task: str, n_outputs: int, source: str) -> int:
    """Units of the last layer: classes, 1 for binary cross-entropy, or regression targets.

    Raises:
        ConfigError: the loss, or the early-stopping metric, does not fit the task.
    """
    loss = exp.loss.type
    spec = LOSSES[loss].spec
    if spec.data_task != task:
        raise ConfigError(
            f"{source}: loss: '{loss}' needs {spec.data_task} data, but data.source gives {task} targets"
        )
    stopping = exp.train.early_stopping
    if stopping is not None and stopping.metric == "val_accuracy" and task != "classification":
        raise ConfigError(
            f"{source}: train.early_stopping.metric: 'val_accuracy' needs classification data; "
            f"use val_loss for {task}"
        )
    if spec.task == "binary":
        if n_outputs != 2:
            raise ConfigError(
                f"{source}: loss: '{loss}' needs exactly 2 classes, the data has {n_outputs}"
            )
        return 1
    return n_outputs


class NetworkTooLarge(ConfigError):
    """Building would allocate more parameters than allowed.

    Attributes:
        key: the YAML key of the size of the layer that went over (``model.layers[3].channels``).
        parameters: the parameters of the network up to and including that layer.
    """

    def __init__(self, message: str, key: str, parameters: int):
        super().__init__(message)
        self.key, self.parameters = key, parameters


def layer_key(exp, i: int) -> str:
    """The YAML key of layer ``i`` of the expanded layer list; for its size (``units``,
    ``channels``) where the layer has one: ``model.layers[3].channels``,
    ``model.mlp.hidden``."""
    sized_by = LAYERS[exp.model.layer_specs()[i].type].spec.sized_by
    if exp.model.layers is not None:
        return f"model.layers[{i}]" + (f".{sized_by}" if sized_by else "")
    return "model.mlp.hidden" if sized_by else "model.mlp"


def build_model(exp, n_features: int, units_out: int, rng: np.random.Generator, source: str,
                image_shape=None, max_parameters: int | None = None) -> Sequential:
    """The configured network for rows of ``n_features`` inputs, parameters drawn from ``rng``.

    The last layer's ``auto`` option (Linear's ``units``) becomes ``units_out``.

    Args:
        image_shape: (C, H, W) of the images the rows hold, or None. A network with an
            image layer (``spec.images``) takes the rows as images of this shape; any
            other network takes them as flat rows.
        max_parameters: the most parameters the network may have; each layer's are
            counted (``parameter_shapes``) before it allocates them.

    Raises:
        NetworkTooLarge: more than ``max_parameters``, naming the first layer that
            goes over.
        ConfigError: a layer that cannot take the shape reaching it, naming the layer
            and the shapes; the last layer's units differ from ``units_out``.
    """
    sections = exp.model.layer_specs()
    key = "model.layers" if exp.model.layers is not None else "model.mlp"
    dtype = np.dtype(exp.model.dtype)
    images = next((i for i, s in enumerate(sections) if LAYERS[s.type].spec.images), None)
    if images is not None and image_shape is None:
        raise ConfigError(
            f"{source}: {key}[{images}]: {sections[images].type} needs images, but the data rows "
            f"have no image shape: give data.shape: [C, H, W] ({n_features} values per row)")
    input_shape = tuple(image_shape) if images is not None else None
    layers, shape, parameters = [], input_shape or (n_features,), 0
    for i, section in enumerate(sections):
        cls = LAYERS[section.type]
        kwargs = _arguments(cls.spec, section)
        for option in (o for o in cls.spec.options if o.auto and i == len(sections) - 1):
            value = kwargs[option.keyword]
            if value not in ("auto", units_out):
                raise ConfigError(
                    f"{source}: {key}[{i}].{option.name}: is {value}, but the data and loss need "
                    f"{units_out} outputs (write {option.name}: auto)"
                )
            kwargs[option.keyword] = units_out
        kwargs.update(_inputs(shape, dtype, rng))
        parameters += sum(math.prod(s) for s in _call(cls.parameter_shapes, kwargs).values())
        if max_parameters is not None and parameters > max_parameters:
            where = layer_key(exp, i)
            raise NetworkTooLarge(f"{source}: {where}: the network up to this layer has "
                                  f"{parameters:,} parameters, more than {max_parameters:,}",
                                  where, parameters)
        layer = _call(cls, kwargs)
        try:
            shape = layer.output_shape(shape)
        except ValueError as exc:
            raise ConfigError(f"{source}: {key}[{i}]: {exc}") from None
        layers.append(layer)
    return Sequential(layers, input_shape)


def build_network(exp, data, rng: np.random.Generator, source: str,
                  max_parameters: int | None = None) -> Sequential:
    """The configured network for ``data`` (a DataBundle or DataMeta: task, feature and
    output counts, image shape); the last layer sized by ``output_units``; at most
    ``max_parameters`` (see ``build_model``)."""
    units = output_units(exp, data.task, data.n_outputs, source)
    return build_model(exp, data.n_features, units, rng, source, data.shape, max_parameters)


def _arguments(spec, section) -> dict:
    """The constructor keywords of a config section's options, values as configured."""
    return {option.keyword: getattr(section, option.name) for option in spec.options}


def _inputs(shape: tuple, dtype, rng) -> dict:
    """The constructor keywords a layer may take besides its options: the input size
    (features or channels: ``shape[0]``), the dtype and the rng."""
    return {"in_features": shape[0], "num_features": shape[0], "in_channels": shape[0],
            "dtype": dtype, "rng": rng}


def _call(fn, kwargs: dict):
    """``fn`` called with those of ``kwargs`` it takes."""
    accepted = inspect.signature(fn).parameters
    return fn(**{name: value for name, value in kwargs.items() if name in accepted})


def build_loss(exp):
    """The configured loss object."""
    cls = LOSSES[exp.loss.type]
    return cls(**_arguments(cls.spec, exp.loss))


def loss_targets(exp, y: np.ndarray, dtype) -> np.ndarray:
    """Labels as the loss wants them: 0/1 floats of the model's dtype for binary
    cross-entropy, class indices or regression targets unchanged otherwise."""
    return y.astype(dtype) if LOSSES[exp.loss.type].spec.task == "binary" else y


def predicted_classes(scores: np.ndarray) -> np.ndarray:
    """Class indices from scores: argmax, or ``score > 0`` for one binary logit.

    scores: (N, C) -> (N,) int64.
    """
    if scores.shape[1] == 1:
        return (scores[:, 0] > 0).astype(np.int64)
    return scores.argmax(axis=1)


def build_optimizer(exp, model: Sequential):
    """The configured optimizer over ``model``'s parameters."""
    cls = OPTIMIZERS[exp.optimizer.type]
    return cls(model.parameters(), **_arguments(cls.spec, exp.optimizer))


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return math.ceil(n_train / batch_size)


def build_schedule(exp, steps_in_epoch: int):
    """``lr_at(step) -> float`` for the configured schedule, in optimizer steps.

    Options given in epochs become steps (at least 1), factors per epoch factors per step.
    """
    spec = SCHEDULES[exp.schedule.type].spec
    kwargs = _arguments(spec, exp.schedule)
    for option in spec.options:
        if option.unit == "epochs":
            kwargs[option.keyword] = max(1, round(kwargs[option.keyword] * steps_in_epoch))
        elif option.unit == "per epoch":
            kwargs[option.keyword] **= 1.0 / steps_in_epoch
    return make_schedule(
        exp.schedule.type,
        base_lr=exp.optimizer.lr,
        total_steps=exp.train.epochs * steps_in_epoch,
        warmup_steps=round(exp.schedule.warmup_epochs * steps_in_epoch),
        **kwargs,
    )
