"""Which settings differ between resolved configs (for --resume and run comparison)."""

from __future__ import annotations

import json

# Keys that change neither the numbers nor the result of a run.
RUN_CONTROL_KEYS = ("name", "output", "train.max_time", "train.checkpoint", "train.threads")


def flatten(node, prefix: str = "") -> dict:
    """Nested dicts and lists as ``{"optimizer.lr": 0.1, "model.layers[0].units": 64}``."""
    if isinstance(node, dict):
        items = [(f"{prefix}.{key}" if prefix else str(key), value) for key, value in node.items()]
    elif isinstance(node, list):
        items = [(f"{prefix}[{i}]", value) for i, value in enumerate(node)]
    else:
        return {prefix: node}
    out = {}
    for key, value in items:
        out.update(flatten(value, key))
    return out or {prefix: node}


def differing_keys(configs: list[dict]) -> list[str]:
    """Dotted config keys whose values are not the same in all ``configs``.

    A key missing from some configs differs; keys in ``RUN_CONTROL_KEYS`` are left out.
    """
    flat = [flatten(c) for c in configs]
    keys = sorted(set().union(*flat)) if flat else []
    return [k for k in keys
            if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1
            and not any(k == c or k.startswith(c + ".") for c in RUN_CONTROL_KEYS)]
