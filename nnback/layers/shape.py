"""Flatten: images (N, C, H, W) to feature rows (N, C * H * W) for the linear layers."""

import math

from nnback.layers.base import Layer
from nnback.spec import Formulas, LayerSpec


class Flatten(Layer):
    """Each sample's values as one row, in C order (as torch.nn.Flatten).

    Shape:
        x, dx: (N, ...); out, dout: (N, D) with D the product of x's other sizes.

    Attributes:
        params, grads, buffers: empty.
    """

    spec = LayerSpec(
        name="flatten", doc="Images (N, C, H, W) to rows (N, C*H*W) for linear layers.", images=True,
        formulas=Formulas(forward=["out = x.reshape(N, {o})"], passes=["dx = dout.reshape(N, {i})"],
                          caches=[("the input shape", "(N, {i})")]))

    def forward(self, x, training=True):
        self._cache = x.shape
        return x.reshape(len(x), -1)

    def backward(self, dout):
        return dout.reshape(self._saved())

    def output_shape(self, in_shape):
        return (math.prod(in_shape),)
