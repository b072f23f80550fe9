"""Training that went non-finite: the error it raises and where it started."""

from __future__ import annotations

import numpy as np

from nnback.errors import EXIT_DIVERGED, NnbackError


class Diverged(NnbackError):
    """The loss, a gradient or a weight became NaN or infinite.

    Args:
        message: one line naming the epoch, step and the first non-finite layer.
        progress: the trainer's progress at that moment.
    """

    exit_code = EXIT_DIVERGED

    def __init__(self, message: str, progress=None):
        super().__init__(message)
        self.progress = progress


def find_nonfinite(model, x: np.ndarray) -> str:
    """Name the first layer whose weights or output are not finite on batch ``x``.

    Replays the forward pass in evaluation mode (no dropout draws, no running-statistic
    updates), so the model is left exactly as it was.
    """
    out = model.shaped_input(x)
    if not np.isfinite(out).all():
        return "the input batch is not finite"
    for i, layer in enumerate(model.layers):
        for key, param in layer.params.items():
            if not np.isfinite(param).all():
                return f"parameter {i}.{key} of layer {i} {layer!r} is not finite"
        out = layer.forward(out, training=False)
        if not np.isfinite(out).all():
            return f"first non-finite output at layer {i} {layer!r}"
    return "every layer output is finite; the loss itself overflowed"


def find_nonfinite_grad(model) -> str | None:
    """Name the first parameter, in backward order, whose gradient is not finite.

    Entry by entry: for the step that found a non-finite ``grad_norm``, which also
    overflows on finite gradients too large to square.

    Returns:
        e.g. ``"parameter 2.W of layer 2 Linear(16, 3)"``, or None if every gradient is
        finite.
    """
    for i in reversed(range(len(model.layers))):
        layer = model.layers[i]
        for key, grad in layer.grads.items():
            if not np.isfinite(grad).all():
                return f"parameter {i}.{key} of layer {i} {layer!r}"
    return None
