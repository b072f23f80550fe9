"""``nnback validate``: the config and its data checked, the resolved config and layers shown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from nnback.config import load_config
from nnback.formatting import format_bytes, format_table
from nnback.memory import layer_memory
from nnback.train.plan import load_training_data, trainable_network


def shape_text(shape) -> str:
    """A batch of samples of ``shape``: ``(N, 64)``, ``(N, 16, 8, 8)``."""
    return f"(N, {', '.join(map(str, shape))})"


def layer_table(model, n_features: int, batch: int) -> list[tuple[str, str, int, int]]:
    """(layer, output shape, parameter count, batch memory): the input first, then each layer.

    Batch memory, in bytes, is what a training step on ``batch`` samples holds for
    the layer (``nnback.memory.LayerMemory.train_values``).
    """
    itemsize = model.dtype.itemsize
    return [(row.name, shape_text(row.shape), row.parameters, batch * row.train_values * itemsize)
            for row in layer_memory(model, n_features)]


def validate_report(config: str | Path, overrides=()) -> str:
    """Validate the config and its data; return the report ``nnback validate`` prints."""
    exp = load_config(config, overrides)
    bundle = load_training_data(exp, str(config))
    model, need = trainable_network(exp, bundle, np.random.default_rng(exp.seed), str(config))
    rows = layer_table(model, bundle.n_features, exp.train.batch_size)
    lines = [yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False).rstrip(), ""]
    lines.append(format_table(["layer", "output", "parameters", "batch memory"],
                              [[name, shape, f"{count:,}", format_bytes(memory)]
                               for name, shape, count, memory in rows]))
    n_params = model.num_parameters()
    param_bytes = n_params * model.dtype.itemsize
    sizes = {name: len(getattr(bundle, name)) for name in ("train", "val", "test") if getattr(bundle, name)}
    lines += [
        "",
        f"total parameters: {n_params:,} ({format_bytes(param_bytes)} of {model.dtype})",
        f"training memory: ~{format_bytes(need.total)}: {format_bytes(need.parameters)} for the "
        f"weights, gradients, optimizer state and checkpoint copies, {format_bytes(need.batch)} "
        f"for a batch of {need.rows}, {format_bytes(need.evaluation)} for evaluating "
        f"{need.eval_rows} rows at a time",
        f"data: {bundle.task}, {bundle.n_features} features, "
        + (f"{bundle.n_outputs} classes, " if bundle.task == "classification" else "")
        + ", ".join(f"{k} {v}" for k, v in sizes.items()),
        f"{config}: valid",
    ]
    return "\n".join(lines)
