"""Element-wise nonlinearities. None has parameters; all keep the input's shape and dtype.

Shape (every layer here): x: (N, D); out: (N, D); dout: (N, D); dx: (N, D).
"""

import math

import numpy as np

from nnback.layers.base import Layer


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

    def forward(self, x, training=True):
        out = np.maximum(x, 0)
        self._cache = out
        return out

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

    def __init__(self, negative_slope=0.01):
        super().__init__()
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
        beta: sharpness.
        threshold: above this value of ``beta * x`` the output is ``x``.

    Attributes:
        params, grads, buffers: empty.
    """

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
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
