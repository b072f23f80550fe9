"""Inverted dropout."""

import numpy as np

from nnback.layers.base import Layer
from nnback.spec import Formulas, LayerSpec, Option


class Dropout(Layer):
    """Zero each input with probability ``p`` in training and scale the rest by 1/(1-p).

    In evaluation (``training=False``) it is the identity, so nothing changes at test time.

    Args:
        p: probability of zeroing an element, 0 <= p < 1.
        rng: np.random.Generator the masks are drawn from; a fresh unseeded one if None.

    Shape:
        x: any shape, (N, D) or (N, C, H, W); out, dout, dx: x's shape.

    Attributes:
        rng: the mask generator. Restoring its state before a forward pass replays the
            same mask (the gradient check does this).
        params, grads, buffers: empty.
    """

    spec = LayerSpec(
        name="dropout", doc="Inverted dropout; identity in evaluation.",
        options=(Option("p", float, 0.5, "Probability of zeroing a unit in training.", ge=0, lt=1),),
        formulas=Formulas(
            forward=["training: mask = (uniform(0, 1) >= {layer.p}) / (1 - {layer.p});  out = x * mask",
                     "evaluation: out = x"],
            passes=["dx = dout * mask   (evaluation: dx = dout)"],
            caches=[("mask, training only", "(N, {i})")],
        ),
    )

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.spec.check(p=p)
        self.p = p
        self.rng = np.random.default_rng() if rng is None else rng

    def forward(self, x, training=True):
        if not training or self.p == 0:
            self._cache = (None,)
            return x
        keep = 1 - self.p
        mask = (self.rng.random(x.shape, dtype=x.dtype) < keep) * x.dtype.type(1 / keep)
        self._cache = (mask,)
        return x * mask

    def backward(self, dout):
        (mask,) = self._saved()
        return dout if mask is None else dout * mask

    def __repr__(self):
        return f"Dropout(p={self.p})"
