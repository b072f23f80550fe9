"""``nnback validate``: the config and its data checked, the resolved config and layers shown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from nnback.build import build_network, build_optimizer
from nnback.config import load_config
from nnback.data import load_data
from nnback.formatting import format_bytes, format_table


def layer_table(model, n_features: int) -> list[tuple[str, str, int]]:
    """(layer, output shape, parameter count): the input first, then each layer."""
    rows, width = [("input", f"(N, {n_features})", 0)], n_features
    for i, layer in enumerate(model.layers):
        width = layer.output_features(width)
        count = sum(p.size for p in layer.params.values())
        rows.append((f"{i} {layer!r}", f"(N, {width})", count))
    return rows


def validate_report(config: str | Path, overrides=()) -> str:
    """Validate the config and its data; return the report ``nnback validate`` prints."""
    exp = load_config(config, overrides)
    bundle = load_data(exp.data, seed=exp.seed, base_dir=Path.cwd())
    model = build_network(exp, bundle, np.random.default_rng(exp.seed), str(config))
    optimizer = build_optimizer(exp, model)
    rows = layer_table(model, bundle.n_features)
    lines = [yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False).rstrip(), ""]
    lines.append(format_table(["layer", "output", "parameters"],
                              [[name, shape, f"{count:,}"] for name, shape, count in rows]))
    n_params = model.num_parameters()
    param_bytes = sum(p.nbytes for _, p, _ in model.parameters())
    state_bytes = sum(a.nbytes for a in optimizer.state_dict().values())
    sizes = {name: len(getattr(bundle, name)) for name in ("train", "val", "test") if getattr(bundle, name)}
    lines += [
        "",
        f"total parameters: {n_params:,} ({format_bytes(param_bytes)} of {model.dtype}); "
        f"training memory for weights, gradients and optimizer state: "
        f"{format_bytes(2 * param_bytes + state_bytes)}",
        f"data: {bundle.task}, {bundle.n_features} features, "
        + (f"{bundle.n_outputs} classes, " if bundle.task == "classification" else "")
        + ", ".join(f"{k} {v}" for k, v in sizes.items()),
        f"{config}: valid",
    ]
    return "\n".join(lines)
