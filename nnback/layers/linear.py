"""Fully connected layer."""

import numpy as np

from nnback.init import INITIALIZERS
from nnback.layers.base import Layer, flat_features
from nnback.spec import REQUIRED, Formulas, LayerSpec, Option


class Linear(Layer):
    """Affine map ``out = x @ W + b``.

    Args:
        in_features: D_in, size of each input sample.
        out_features: D_out, size of each output sample.
        init: weight initialiser, a name in ``nnback.init.INITIALIZERS`` (``"he_normal"``).
        bias: whether to add the learned bias ``b``.
        dtype: dtype of the parameters (np.float32 or np.float64).
        rng: np.random.Generator the weights are drawn from; a fresh unseeded one if None.

    Shape:
        x: (N, D_in); out: (N, D_out); dout: (N, D_out); dx: (N, D_in).

    Attributes:
        params["W"]: (D_in, D_out), drawn by ``init`` with fan_in = D_in, fan_out = D_out.
        params["b"]: (D_out,), zeros (absent when ``bias=False``).

    Example:
        >>> layer = Linear(784, 128, rng=np.random.default_rng(0))
        >>> layer.forward(np.zeros((32, 784), np.float32)).shape
        (32, 128)
    """

    spec = LayerSpec(
        name="linear", doc="Fully connected layer, out = x @ W + b.", role="linear", sized_by="units",
        options=(
            Option("units", int, REQUIRED, "Output features; 'auto' = number of classes (or "
                   "regression targets).", gt=0, arg="out_features", auto=True),
            Option("init", str, "he_normal", "Weight initialisation; biases start at zero.",
                   choices=tuple(INITIALIZERS)),
            Option("bias", bool, True, "Learn an additive bias b."),
        ),
        formulas=Formulas(
            forward=["out = x @ W{bias}"],
            passes=["dx = dout @ W.T"],
            keeps=[("W", "dW = x.T @ dout"), ("b", "db = sum over N of dout")],
            caches=[("x", "(N, {i})")],
        ),
    )

    def __init__(self, in_features, out_features, init="he_normal", bias=True,
                 dtype=np.float32, rng=None):
        super().__init__()
        self.spec.check(out_features=out_features, init=init)
        self.in_features = in_features
        self.out_features = out_features
        self.init = init
        self.dtype = np.dtype(dtype)
        self.params["W"] = np.empty((in_features, out_features), self.dtype)
        if bias:
            self.params["b"] = np.empty(out_features, self.dtype)
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self._ones_cache = np.ones(0, self.dtype)
        self.reset_parameters(np.random.default_rng() if rng is None else rng)

    @classmethod
    def parameter_shapes(cls, in_features, out_features, bias=True):
        """W: (D_in, D_out) and b: (D_out,)."""
        return {"W": (in_features, out_features), **({"b": (out_features,)} if bias else {})}

    def reset_parameters(self, rng):
        """Redraw W with the layer's initialiser from ``rng``; set b to zeros."""
        draw = INITIALIZERS[self.init]
        self.params["W"][...] = draw(self.in_features, self.out_features, rng, self.dtype)
        if "b" in self.params:
            self.params["b"].fill(0)

    def forward(self, x, training=True):
        """x: (N, D_in) -> out: (N, D_out)."""
        out = np.matmul(x, self.params["W"])
        if "b" in self.params:
            out += self.params["b"]
        self._cache = x
        return out

    def backward(self, dout, input_grad=True):
        """dout: (N, D_out) -> dx: (N, D_in); dW = x.T @ dout, db = dout summed over N.

        With ``input_grad=False`` only dW and db are computed and None is returned.
        """
        x = self._saved()
        np.matmul(x.T, dout, out=self.grads["W"])
        if "b" in self.grads:
            np.matmul(self._ones(len(dout)), dout, out=self.grads["b"])
        return np.matmul(dout, self.params["W"].T) if input_grad else None

    def _ones(self, n):
        """A cached ones vector, (n,): ``ones @ dout`` sums over the batch faster than sum."""
        if len(self._ones_cache) != n:
            self._ones_cache = np.ones(n, self.dtype)
        return self._ones_cache

    def output_shape(self, in_shape):
        return (self.output_features(flat_features(self, in_shape)),)

    def output_features(self, in_features):
        if in_features != self.in_features:
            raise ValueError(
                f"{self!r} expects {self.in_features} input features, got {in_features}")
        return self.out_features

    def __repr__(self):
        bias = "" if "b" in self.params else ", bias=False"
        return f"Linear({self.in_features}, {self.out_features}{bias})"
