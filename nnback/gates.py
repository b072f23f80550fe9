"""Scalar gates from the backpropagation notes: add, multiply, max and sigmoid.

Each gate follows the layer contract on scalars: ``forward`` computes the output and
caches what ``backward`` needs; ``backward(dout)`` multiplies the upstream gradient by
the local gradients and returns one gradient per input. Wiring gates together and
calling ``backward`` in reverse order computes any circuit's gradient, e.g.
f = (x + y) * z:

    >>> add, mul = Add(), Multiply()
    >>> f = mul.forward(add.forward(-2.0, 5.0), -4.0)
    >>> dq, dz = mul.backward(1.0)
    >>> f, add.backward(dq), dz
    (-12.0, (-4.0, -4.0), 3.0)
"""

import math

from nnback.layers.base import Cached


class Add(Cached):
    """q = x + y; distributes dout unchanged to both inputs."""

    def forward(self, x, y):
        self._cache = ()
        return x + y

    def backward(self, dout):
        """Return (dx, dy)."""
        self._saved()
        return dout, dout


class Multiply(Cached):
    """q = x * y; each input gets dout times the other input."""

    def forward(self, x, y):
        self._cache = (x, y)
        return x * y

    def backward(self, dout):
        """Return (dx, dy)."""
        x, y = self._saved()
        return dout * y, dout * x


class Max(Cached):
    """q = max(x, y); routes dout to the larger input (to x on a tie), 0 to the other."""

    def forward(self, x, y):
        self._cache = x >= y
        return x if self._cache else y

    def backward(self, dout):
        """Return (dx, dy)."""
        x_won = self._saved()
        return (dout, 0.0) if x_won else (0.0, dout)


class Sigmoid(Cached):
    """q = 1 / (1 + exp(-x)); local gradient (1 - q) * q."""

    def forward(self, x):
        q = 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))
        self._cache = q
        return q

    def backward(self, dout):
        """Return dx."""
        q = self._saved()
        return dout * (1 - q) * q
