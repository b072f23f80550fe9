"""``nnback validate``: the config and its data checked, the resolved config and layers shown."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import yaml

from nnback.build import build_network, build_optimizer
from nnback.config import load_config
from nnback.formatting import format_bytes, format_table
from nnback.layers import Conv2d
from nnback.train.plan import check_trainable, load_training_data


def shape_text(shape) -> str:
    """A batch of samples of ``shape``: ``(N, 64)``, ``(N, 16, 8, 8)``."""
    return f"(N, {', '.join(map(str, shape))})"


def layer_shapes(model, n_features: int) -> list[tuple]:
    """The shape of one sample entering the model, then after each layer."""
    shapes = [model.input_shape or (n_features,)]
    for layer in model.layers:
        shapes.append(layer.output_shape(shapes[-1]))
    return shapes


def layer_table(model, n_features: int, batch: int) -> list[tuple[str, str, int, int]]:
    """(layer, output shape, parameter count, batch memory): the input first, then each layer.

    Batch memory, in bytes, is what a training step on ``batch`` samples holds for
    the layer: its output and the gradient of it, and a convolution's im2col matrix
    and its gradient.
    """
    itemsize = model.dtype.itemsize
    shapes = layer_shapes(model, n_features)
    rows = [("input", shape_text(shapes[0]), 0, batch * math.prod(shapes[0]) * itemsize)]
    for i, layer in enumerate(model.layers):
        count = sum(p.size for p in layer.params.values())
        values = 2 * batch * math.prod(shapes[i + 1])
        if isinstance(layer, Conv2d):
            values += 2 * math.prod(layer.columns_shape(shapes[i], batch))
        rows.append((f"{i} {layer!r}", shape_text(shapes[i + 1]), count, values * itemsize))
    return rows


def validate_report(config: str | Path, overrides=()) -> str:
    """Validate the config and its data; return the report ``nnback validate`` prints."""
    exp = load_config(config, overrides)
    bundle = load_training_data(exp, str(config))
    check_trainable(exp, bundle, str(config))
    model = build_network(exp, bundle, np.random.default_rng(exp.seed), str(config))
    optimizer = build_optimizer(exp, model)
    rows = layer_table(model, bundle.n_features, exp.train.batch_size)
    lines = [yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False).rstrip(), ""]
    lines.append(format_table(["layer", "output", "parameters", "batch memory"],
                              [[name, shape, f"{count:,}", format_bytes(memory)]
                               for name, shape, count, memory in rows]))
    n_params = model.num_parameters()
    param_bytes = sum(p.nbytes for _, p, _ in model.parameters())
    state_bytes = sum(a.nbytes for a in optimizer.state_dict().values())
    sizes = {name: len(getattr(bundle, name)) for name in ("train", "val", "test") if getattr(bundle, name)}
    lines += [
        "",
        f"total parameters: {n_params:,} ({format_bytes(param_bytes)} of {model.dtype}); "
        f"training memory for weights, gradients and optimizer state: "
        f"{format_bytes(2 * param_bytes + state_bytes)}; for a batch of {exp.train.batch_size}: "
        f"{format_bytes(sum(row[3] for row in rows))}",
        f"data: {bundle.task}, {bundle.n_features} features, "
        + (f"{bundle.n_outputs} classes, " if bundle.task == "classification" else "")
        + ", ".join(f"{k} {v}" for k, v in sizes.items()),
        f"{config}: valid",
    ]
    return "\n".join(lines)
