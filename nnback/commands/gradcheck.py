"""``nnback gradcheck``: analytic and numerical gradients of the configured network compared."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nnback.build import build_loss, build_network, loss_targets
from nnback.config import load_config
from nnback.data import load_data
from nnback.errors import NnbackError
from nnback.formatting import format_table
from nnback.gradcheck import check_model


def gradcheck_report(config: str | Path, overrides=(), batch: int = 8, threshold: float = 1e-6):
    """Numerical vs analytic gradients of the configured network and loss, in float64.

    Uses the first ``batch`` rows of the real (preprocessed) training data, and the
    initial weights with the 1-D parameters (biases, norm scales and shifts) moved off
    their initial values by a little noise.

    Returns:
        (report text, True if every relative error is at most ``threshold``).

    Raises:
        NnbackError: a threshold that is not a positive number; bad config or data.
    """
    if not (math.isfinite(threshold) and threshold > 0):
        raise NnbackError(f"--threshold {threshold:g}: must be a positive number, e.g. 1e-6")
    exp = load_config(config, overrides, names_folder=False)
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
    rows = [[name, f"{err:.2e}", "ok" if err <= threshold else "FAIL"] for name, err in errors.items()]
    lines = [format_table(["gradient", "rel. error", "result"], rows)]
    ok = all(err <= threshold for err in errors.values())
    worst = max(errors.values())
    lines.append(f"{len(errors)} gradients on a batch of {len(x)}, worst {worst:.2e}, "
                 f"threshold {threshold:.0e}: {'passed' if ok else 'FAILED'}")
    return "\n".join(lines), ok
