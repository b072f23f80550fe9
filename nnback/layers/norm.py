"""Normalisation layers: BatchNorm1d (over the batch) and LayerNorm (over features)."""

import numpy as np

from nnback.layers.base import Layer


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
    n = dxhat.shape[axis]
    dx = dxhat * n
    dx -= dxhat.sum(axis=axis, keepdims=True)
    dx -= xhat * np.sum(dxhat * xhat, axis=axis, keepdims=True)
    dx *= inv_std / n
    return dx


class _AffineNorm(Layer):
    """Normalisation followed by a learned per-feature scale ``gamma`` and shift ``beta``."""

    def __init__(self, num_features, eps=1e-5, dtype=np.float32):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.params = {"gamma": np.ones(num_features, dtype), "beta": np.zeros(num_features, dtype)}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    def _affine(self, xhat):
        out = xhat * self.params["gamma"]
        out += self.params["beta"]
        return out

    def _affine_backward(self, dout, xhat):
        """Overwrite dgamma, dbeta; return dxhat."""
        np.sum(dout * xhat, axis=0, out=self.grads["gamma"])
        np.sum(dout, axis=0, out=self.grads["beta"])
        return dout * self.params["gamma"]

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

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__(num_features, eps, dtype)
        self.momentum = momentum
        self.buffers = {"running_mean": np.zeros(num_features, dtype),
                        "running_var": np.ones(num_features, dtype)}

    def forward(self, x, training=True):
        if not training:
            inv_std = 1 / np.sqrt(self.buffers["running_var"] + self.eps)
            xhat = (x - self.buffers["running_mean"]) * inv_std
            self._cache = (False, xhat, inv_std)
            return self._affine(xhat)
        n = x.shape[0]
        if n < 2:
            raise ValueError("BatchNorm1d needs more than 1 sample per batch in training")
        xhat, inv_std, mean, var = _normalize(x, 0, self.eps)
        m = self.momentum
        running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
        running_mean *= 1 - m
        running_mean += m * mean[0]
        running_var *= 1 - m
        running_var += (m * n / (n - 1)) * var[0]
        self._cache = (True, xhat, inv_std)
        return self._affine(xhat)

    def backward(self, dout, input_grad=True):
        """dout: (N, D) -> dx: (N, D); None with ``input_grad=False`` (grads only)."""
        training, xhat, inv_std = self._saved()
        dxhat = self._affine_backward(dout, xhat)
        if not input_grad:
            return None
        if training:
            return _normalize_backward(dxhat, xhat, inv_std, 0)
        dxhat *= inv_std
        return dxhat

    def __repr__(self):
        return f"BatchNorm1d({self.num_features}, eps={self.eps}, momentum={self.momentum})"


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
