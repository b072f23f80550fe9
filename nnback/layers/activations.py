"""Element-wise nonlinearities. None has parameters; all keep the input's shape and dtype.

Shape (every layer here): x of any shape, (N, D) or images (N, C, H, W); out, dout and
dx have x's shape.
"""

import math

import numpy as np

from nnback.layers.base import Layer
from nnback.spec import Formulas, LayerSpec, Option


def sigmoid(x):
    """Logistic function 1 / (1 + exp(-x)), without overflow for any x; same dtype as x."""
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def _like_product(dout, saved):
    """A new array shaped like ``dout`` in the dtype ``dout * saved`` has."""
    return np.empty(dout.shape, np.result_type(dout, saved))


class ReLU(Layer):
    """Rectified linear unit ``max(x, 0)``; the gradient is 0 where x <= 0.

    Attributes:
        params, grads, buffers: empty.
    """

    spec = LayerSpec(
        name="relu", doc="max(x, 0).", role="activation", can_die=True,
        formulas=Formulas(
            forward=["out = max(x, 0)"],
            passes=["dx = dout * (out > 0)   (a max gate: the gradient flows only where x > 0)"],
            caches=[("out", "(N, {i})")],
        ),
    )

    _zeros = np.zeros(0, np.float32)  # compared with x; replaced for each new shape

    def forward(self, x, training=True):
        """out = max(x, 0), taken against an array of zeros: NumPy's maximum with the
        scalar 0 runs a loop about three times slower than with an array."""
        if self._zeros.shape != x.shape or self._zeros.dtype != x.dtype:
            self._zeros = np.zeros(x.shape, x.dtype)
        out = np.maximum(x, self._zeros)
        self._cache = out
        return out

    def working_values(self, in_shape, training):
        """The zeros the input is compared with: as many as its values."""
        return math.prod(in_shape)

    def backward(self, dout):
        """dx = dout * (out > 0): the mask is written into dx, then multiplied in place.

        A float mask times dout is one SIMD multiply; a boolean mask would be cast
        element by element, which is twice as slow.
        """
        positive = self._saved()
        dx = np.greater(positive, 0, out=_like_product(dout, positive))
        dx *= dout
        return dx


class LeakyReLU(Layer):
    """``x`` where x > 0, ``negative_slope * x`` elsewhere (as torch.nn.LeakyReLU).

    Args:
        negative_slope: slope for x <= 0.

    Attributes:
        params, grads, buffers: empty.
    """

    spec = LayerSpec(
        name="leaky_relu", doc="max(x, negative_slope * x).", role="activation",
        options=(Option("negative_slope", float, 0.01, "Slope for negative inputs.", ge=0),),
        formulas=Formulas(
            forward=["out = x where x > 0, else {layer.negative_slope} * x"],
            passes=["dx = dout where x > 0, else {layer.negative_slope} * dout"],
            caches=[("mask x > 0", "(N, {i}) bool")],
        ),
    )

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.spec.check(negative_slope=negative_slope)
        self.negative_slope = negative_slope

    def forward(self, x, training=True):
        positive = x > 0
        self._cache = positive
        return np.where(positive, x, x * self.negative_slope)

    def backward(self, dout):
        return np.where(self._saved(), dout, dout * self.negative_slope)

    def __repr__(self):
        return f"LeakyReLU(negative_slope={self.negative_slope})"


class Sigmoid(Layer):
    """Logistic function; local gradient ``out * (1 - out)``.

    Attributes:
        params, grads, buffers: empty.
    """

    spec = LayerSpec(
        name="sigmoid", doc="Logistic function 1 / (1 + exp(-x)).", role="activation",
        saturated_outside=(0.01, 0.99),
        formulas=Formulas(
            forward=["out = 1 / (1 + exp(-x))"],
            passes=["dx = dout * out * (1 - out)   (the local gradient is at most 0.25)"],
            caches=[("out", "(N, {i})")],
        ),
    )

    def forward(self, x, training=True):
        out = sigmoid(x)
        self._cache = out
        return out

    def backward(self, dout):
        y = self._saved()
        dx = np.subtract(1, y, out=_like_product(dout, y))
        dx *= y
        dx *= dout
        return dx


class Tanh(Layer):
    """Hyperbolic tangent; local gradient ``1 - out**2``.

    Attributes:
        params, grads, buffers: empty.
    """

    spec = LayerSpec(
        name="tanh", doc="Hyperbolic tangent.", role="activation", saturated_outside=(-0.99, 0.99),
        formulas=Formulas(
            forward=["out = tanh(x)"],
            passes=["dx = dout * (1 - out**2)"],
            caches=[("out", "(N, {i})")],
        ),
    )

    def forward(self, x, training=True):
        out = np.tanh(x)
        self._cache = out
        return out

    def backward(self, dout):
        y = self._saved()
        dx = np.multiply(y, y, out=_like_product(dout, y))
        np.subtract(1, dx, out=dx)
        dx *= dout
        return dx


_GELU_K = math.sqrt(2 / math.pi)
_GELU_C = 0.044715


class GELU(Layer):
    """Gaussian error linear unit, tanh form (torch.nn.GELU(approximate="tanh")).

    ``out = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))``. It differs from
    the exact erf form (PyTorch's default) by less than 1e-3; NumPy has no erf, and the
    gradient here is exact for the function computed.

    Attributes:
        params, grads, buffers: empty.
    """

    spec = LayerSpec(
        name="gelu", doc="Gaussian error linear unit, tanh form.", role="activation",
        formulas=Formulas(
            forward=["t = tanh(sqrt(2/pi) * (x + 0.044715 * x**3))", "out = 0.5 * x * (1 + t)"],
            passes=["dt/dx = sqrt(2/pi) * (1 + 3 * 0.044715 * x**2) * (1 - t**2)",
                    "dx = dout * (0.5 * (1 + t) + 0.5 * x * dt/dx)"],
            caches=[("x", "(N, {i})"), ("t", "(N, {i})")],
        ),
    )

    def forward(self, x, training=True):
        t = np.tanh(_GELU_K * (x + _GELU_C * x * x * x))
        self._cache = (x, t)
        return 0.5 * x * (1 + t)

    def backward(self, dout):
        x, t = self._saved()
        dt = _GELU_K * (1 + 3 * _GELU_C * x * x) * (1 - t * t)
        return dout * (0.5 * (1 + t) + 0.5 * x * dt)


class Softplus(Layer):
    """``log(1 + exp(beta * x)) / beta``, linear where ``beta * x > threshold``.

    As torch.nn.Softplus: the local gradient is ``sigmoid(beta * x)``, and 1 in the
    linear region.

    Args:
        beta: sharpness (> 0).
        threshold: (> 0) above this value of ``beta * x`` the output is ``x``.

    Attributes:
        params, grads, buffers: empty.
    """

    spec = LayerSpec(
        name="softplus", doc="log(1 + exp(beta * x)) / beta, linear above a threshold.",
        role="activation",
        options=(Option("beta", float, 1.0, "Sharpness.", gt=0),
                 Option("threshold", float, 20.0, "Above this value of beta * x the output is x.",
                        gt=0)),
        formulas=Formulas(
            forward=["out = log(1 + exp({layer.beta} * x)) / {layer.beta}   "
                     "(out = x where {layer.beta} * x > {layer.threshold})"],
            passes=["dx = dout * sigmoid({layer.beta} * x)   (dx = dout where linear)"],
            caches=[("beta * x", "(N, {i})"), ("mask of the linear region", "(N, {i}) bool")],
        ),
    )

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.spec.check(beta=beta, threshold=threshold)
        self.beta = beta
        self.threshold = threshold

    def forward(self, x, training=True):
        bx = x * self.beta
        linear = bx > self.threshold
        self._cache = (bx, linear)
        return np.where(linear, x, np.logaddexp(0, bx) / self.beta)

    def backward(self, dout):
        bx, linear = self._saved()
        return dout * np.where(linear, 1, sigmoid(bx))

    def __repr__(self):
        return f"Softplus(beta={self.beta}, threshold={self.threshold})"
