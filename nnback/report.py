"""Reports on an experiment file: ``nnback validate`` and ``nnback gradcheck``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from nnback.build import build_loss, build_network, build_optimizer, loss_targets
from nnback.config import load_config
from nnback.data import load_data
from nnback.gradcheck import check_model
from nnback.train.plan import check_trainable, load_training_data


def layer_table(model, n_features: int) -> list[tuple[str, str, int]]:
    """(layer, output shape, parameter count): the input first, then each layer."""
    rows, width = [("input", f"(N, {n_features})", 0)], n_features
    for i, layer in enumerate(model.layers):
        width = layer.output_features(width)
        count = sum(p.size for p in layer.params.values())
        rows.append((f"{i} {layer!r}", f"(N, {width})", count))
    return rows


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def validate_report(config: str | Path, overrides=()) -> str:
    """Validate the config and its data; return the report ``nnback validate`` prints."""
    exp = load_config(config, overrides)
    bundle = load_training_data(exp, str(config))
    check_trainable(exp, bundle, str(config))
    model = build_network(exp, bundle, np.random.default_rng(exp.seed), str(config))
    optimizer = build_optimizer(exp, model)
    rows = layer_table(model, bundle.n_features)
    name_w = max(len(r[0]) for r in rows)
    shape_w = max(len(r[1]) for r in rows)
    lines = [yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False).rstrip(), ""]
    lines.append(f"{'layer':<{name_w}}  {'output':<{shape_w}}  {'parameters':>10}")
    lines += [f"{name:<{name_w}}  {shape:<{shape_w}}  {count:>10,}" for name, shape, count in rows]
    n_params = model.num_parameters()
    param_bytes = sum(p.nbytes for _, p, _ in model.parameters())
    state_bytes = sum(a.nbytes for a in optimizer.state_dict().values())
    sizes = {name: len(getattr(bundle, name)) for name in ("train", "val", "test") if getattr(bundle, name)}
    lines += [
        "",
        f"total parameters: {n_params:,} ({_bytes(param_bytes)} of {model.dtype}); "
        f"training memory for weights, gradients and optimizer state: "
        f"{_bytes(2 * param_bytes + state_bytes)}",
        f"data: {bundle.task}, {bundle.n_features} features, "
        + (f"{bundle.n_outputs} classes, " if bundle.task == "classification" else "")
        + ", ".join(f"{k} {v}" for k, v in sizes.items()),
        f"{config}: valid",
    ]
    return "\n".join(lines)


def gradcheck_report(config: str | Path, overrides=(), batch: int = 8, threshold: float = 1e-6):
    """Numerical vs analytic gradients of the configured network and loss, in float64.

    Uses the first ``batch`` rows of the real (preprocessed) training data, and the
    initial weights with the 1-D parameters (biases, norm scales and shifts) moved off
    their initial values by a little noise.

    Returns:
        (report text, True if every relative error is at most ``threshold``).
    """
    exp = load_config(config, overrides)
    exp = exp.model_copy(update={"model": exp.model.model_copy(update={"dtype": "float64"})})
    bundle = load_data(exp.data, seed=exp.seed, base_dir=Path.cwd())
    rng = np.random.default_rng(exp.seed)
    model = build_network(exp, bundle, rng, str(config))
    for _, param, _ in model.parameters():
        if param.ndim == 1:
            # Zero biases put every ReLU exactly on its kink for an all-zero input row
            # (the spiral's centre), where the numerical gradient is meaningless.
            param += 0.1 * rng.standard_normal(param.shape)
    loss = build_loss(exp)
    xb, yb = bundle.train.take(np.arange(min(batch, len(bundle.train))))
    x = np.ascontiguousarray(xb, dtype=np.float64)
    y = loss_targets(exp, yb, np.float64)
    errors = check_model(model, loss, x, y, training=True)
    width = max(len(name) for name in errors)
    lines = [f"{'gradient':<{width}}  {'rel. error':>10}  result"]
    for name, err in errors.items():
        lines.append(f"{name:<{width}}  {err:>10.2e}  {'ok' if err <= threshold else 'FAIL'}")
    ok = all(err <= threshold for err in errors.values())
    worst = max(errors.values())
    lines.append(f"{len(errors)} gradients on a batch of {len(x)}, worst {worst:.2e}, "
                 f"threshold {threshold:.0e}: {'passed' if ok else 'FAILED'}")
    return "\n".join(lines), ok
