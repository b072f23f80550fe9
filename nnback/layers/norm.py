"""Normalisation layers: BatchNorm1d and BatchNorm2d (over the batch) and LayerNorm
(over features)."""

import numpy as np

from nnback.layers.base import Layer, flat_features
from nnback.layers.window import image_size
from nnback.spec import Formulas, LayerSpec, Option


def _normalize(x, axis, eps):
    """Return xhat = (x - mean) / sqrt(var + eps) and 1 / sqrt(var + eps) along ``axis``."""
    mean = x.mean(axis=axis, keepdims=True)
    xc = x - mean
    var = np.mean(xc * xc, axis=axis, keepdims=True)
    inv_std = 1 / np.sqrt(var + eps)
    xc *= inv_std
    return xc, inv_std, mean, var


def _normalize_backward(dxhat, xhat, inv_std, axis):
    """Gradient through ``_normalize`` with batch statistics: dxhat -> dx."""
    n = dxhat.size // inv_std.size  # values per statistic
    dx = dxhat * n
    dx -= dxhat.sum(axis=axis, keepdims=True)
    dx -= xhat * np.sum(dxhat * xhat, axis=axis, keepdims=True)
    dx *= inv_std / n
    return dx


def _per_feature(array, ndim):
    """A (D,) array shaped to broadcast along axis 1 of an ``ndim``-dimensional input."""
    return array.reshape(array.shape + (1,) * (ndim - 2))


# The parameter gradients both layers keep, for ``nnback explain``.
_AFFINE_KEEPS = [("gamma", "dgamma = sum over N of (dout * xhat)"), ("beta", "dbeta = sum over N of dout")]


class _AffineNorm(Layer):
    """Normalisation followed by a learned scale ``gamma`` and shift ``beta`` per
    feature (axis 1 of the input: a feature column, or a channel of an image)."""

    def __init__(self, num_features, eps=1e-5, dtype=np.float32):
        super().__init__()
        self.spec.check(eps=eps)
        self.num_features = num_features
        self.eps = eps
        self.params = {"gamma": np.ones(num_features, dtype), "beta": np.zeros(num_features, dtype)}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    @classmethod
    def parameter_shapes(cls, num_features):
        """gamma and beta: (D,), one per feature or channel."""
        return {"gamma": (num_features,), "beta": (num_features,)}

    def _affine(self, xhat):
        out = xhat * _per_feature(self.params["gamma"], xhat.ndim)
        out += _per_feature(self.params["beta"], xhat.ndim)
        return out

    def _affine_backward(self, dout, xhat):
        """Overwrite dgamma, dbeta; return dxhat."""
        axes = (0, *range(2, dout.ndim))
        np.sum(dout * xhat, axis=axes, out=self.grads["gamma"])
        np.sum(dout, axis=axes, out=self.grads["beta"])
        return dout * _per_feature(self.params["gamma"], dout.ndim)

    def output_shape(self, in_shape):
        return (self.output_features(flat_features(self, in_shape)),)

    def output_features(self, in_features):
        if in_features != self.num_features:
            raise ValueError(
                f"{self!r} expects {self.num_features} input features, got {in_features}")
        return in_features


class BatchNorm1d(_AffineNorm):
    """Batch normalisation over the batch axis, as torch.nn.BatchNorm1d.

    Training normalises with the batch mean and biased batch variance and updates
    ``running = (1 - momentum) * running + momentum * batch`` (the running variance
    takes the unbiased batch variance). Evaluation normalises with the running values.

    Args:
        num_features: D.
        eps: added to the variance before the square root.
        momentum: weight of the current batch in the running statistics.
        dtype: dtype of parameters and buffers.

    Shape:
        x: (N, D) with N > 1 in training; out, dout, dx: (N, D).

    Attributes:
        params["gamma"]: (D,), ones.  params["beta"]: (D,), zeros.
        buffers["running_mean"]: (D,), zeros.  buffers["running_var"]: (D,), ones.
    """

    axes = (0,)  # the statistics run over these axes of x
    too_few = "more than 1 sample per batch"

    spec = LayerSpec(
        name="batchnorm", doc="Batch normalisation over the batch axis.", role="norm",
        batch_statistics=True,
        options=(
            Option("momentum", float, 0.1, "Weight of the new batch in the running statistics.",
                   gt=0, le=1),
            Option("eps", float, 1e-5, "Added to the variance before the square root.", gt=0),
        ),
        formulas=Formulas(
            forward=["training: mu = mean over N of x;  var = mean over N of (x - mu)**2",
                     "xhat = (x - mu) / sqrt(var + {layer.eps});  out = gamma * xhat + beta",
                     "running_mean and running_var move {layer.momentum} of the way to mu and var;",
                     "evaluation normalises with them instead"],
            passes=["dxhat = dout * gamma",
                    "dx = (dxhat - mean over N of dxhat - xhat * mean over N of (dxhat * xhat))"
                    " / sqrt(var + eps)"],
            keeps=_AFFINE_KEEPS,
            caches=[("xhat", "(N, {i})"), ("1 / sqrt(var + eps)", "(1, {i})")],
        ),
    )

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        self.spec.check(momentum=momentum)
        super().__init__(num_features, eps, dtype)
        self.momentum = momentum
        self.buffers = {"running_mean": np.zeros(num_features, dtype),
                        "running_var": np.ones(num_features, dtype)}

    def forward(self, x, training=True):
        if not training:
            inv_std = _per_feature(1 / np.sqrt(self.buffers["running_var"] + self.eps), x.ndim)
            xhat = (x - _per_feature(self.buffers["running_mean"], x.ndim)) * inv_std
            self._cache = (False, xhat, inv_std)
            return self._affine(xhat)
        n = x.size // x.shape[1]
        if n < 2:
            raise ValueError(f"{type(self).__name__} needs {self.too_few} in training")
        xhat, inv_std, mean, var = _normalize(x, self.axes, self.eps)
        m = self.momentum
        running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
        running_mean *= 1 - m
        running_mean += m * mean.reshape(-1)
        running_var *= 1 - m
        running_var += (m * n / (n - 1)) * var.reshape(-1)
        self._cache = (True, xhat, inv_std)
        return self._affine(xhat)

    def backward(self, dout, input_grad=True):
        """dout -> dx, both x's shape; None with ``input_grad=False`` (grads only)."""
        training, xhat, inv_std = self._saved()
        dxhat = self._affine_backward(dout, xhat)
        if not input_grad:
            return None
        if training:
            return _normalize_backward(dxhat, xhat, inv_std, self.axes)
        dxhat *= inv_std
        return dxhat

    def __repr__(self):
        return f"{type(self).__name__}({self.num_features}, eps={self.eps}, momentum={self.momentum})"


class BatchNorm2d(BatchNorm1d):
    """Batch normalisation of each channel over the batch and all pixels, as
    torch.nn.BatchNorm2d; otherwise as ``BatchNorm1d``.

    Args:
        num_features: C, the number of channels.
        eps, momentum, dtype: as for ``BatchNorm1d``.

    Shape:
        x: (N, C, H, W) with N * H * W > 1 in training; out, dout, dx: (N, C, H, W).

    Attributes:
        params["gamma"]: (C,), ones.  params["beta"]: (C,), zeros.
        buffers["running_mean"]: (C,), zeros.  buffers["running_var"]: (C,), ones.
    """

    spec = LayerSpec(
        name="batchnorm2d", doc="Batch normalisation of each image channel.", images=True,
        batch_statistics=True,
        options=BatchNorm1d.spec.options,
        formulas=Formulas(
            forward=["training: mu, var = mean and variance of each channel over N, H and W",
                     "xhat = (x - mu) / sqrt(var + {layer.eps});  out = gamma * xhat + beta  (per channel)",
                     "running_mean and running_var move {layer.momentum} of the way to mu and var;",
                     "evaluation normalises with them instead"],
            passes=["dxhat = dout * gamma",
                    "dx = (dxhat - mean over N,H,W of dxhat - xhat * mean over N,H,W of (dxhat * xhat))"
                    " / sqrt(var + eps)"],
            keeps=[("gamma", "dgamma = sum over N, H, W of (dout * xhat)"),
                   ("beta", "dbeta = sum over N, H, W of dout")],
            caches=[("xhat", "(N, {i})"), ("1 / sqrt(var + eps)", "(1, C, 1, 1)")],
        ),
    )
    axes = (0, 2, 3)
    too_few = "more than 1 value per channel (batch size times pixels)"

    def output_shape(self, in_shape):
        image_size(self, in_shape)
        if in_shape[0] != self.num_features:
            raise ValueError(f"{self!r} expects {self.num_features} channels, got {in_shape[0]}")
        return in_shape


class LayerNorm(_AffineNorm):
    """Normalise each sample over its features, as torch.nn.LayerNorm(D).

    The same in training and evaluation.

    Args:
        num_features: D.
        eps: added to the variance before the square root.
        dtype: dtype of the parameters.

    Shape:
        x, out, dout, dx: (N, D).

    Attributes:
        params["gamma"]: (D,), ones.  params["beta"]: (D,), zeros.
    """

    spec = LayerSpec(
        name="layernorm", doc="Normalisation over the features of each sample.", role="norm",
        options=(Option("eps", float, 1e-5, "Added to the variance before the square root.", gt=0),),
        formulas=Formulas(
            forward=["mu, var = mean and variance of each sample over its {i} features",
                     "xhat = (x - mu) / sqrt(var + {layer.eps});  out = gamma * xhat + beta"],
            passes=["dxhat = dout * gamma",
                    "dx = (dxhat - mean over D of dxhat - xhat * mean over D of (dxhat * xhat))"
                    " / sqrt(var + eps)"],
            keeps=_AFFINE_KEEPS,
            caches=[("xhat", "(N, {i})"), ("1 / sqrt(var + eps)", "(N, 1)")],
        ),
    )

    def forward(self, x, training=True):
        xhat, inv_std, _, _ = _normalize(x, 1, self.eps)
        self._cache = (xhat, inv_std)
        return self._affine(xhat)

    def backward(self, dout, input_grad=True):
        """dout: (N, D) -> dx: (N, D); None with ``input_grad=False`` (grads only)."""
        xhat, inv_std = self._saved()
        dxhat = self._affine_backward(dout, xhat)
        return _normalize_backward(dxhat, xhat, inv_std, 1) if input_grad else None

    def __repr__(self):
        return f"LayerNorm({self.num_features}, eps={self.eps})"
