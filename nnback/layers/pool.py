"""Pooling: the maximum or the mean of each window, and the mean of each whole channel.

The windowed pools loop over the kh * kw kernel offsets (see ``nnback.layers.window``):
each offset is one vectorised operation over all samples, channels and output pixels.
"""

import numpy as np

from nnback.layers.base import Layer
from nnback.layers.window import image_size, offset_view, output_size, pair
from nnback.spec import REQUIRED, Formulas, LayerSpec, Option


def _pool_spec(name, doc, formulas):
    return LayerSpec(
        name=name, doc=doc, images=True, formulas=formulas,
        options=(Option("kernel", int, REQUIRED, "Window size: 2 for 2x2, or [kh, kw].", ge=1,
                        pair=True, arg="kernel_size"),
                 Option("stride", int, None, "Step of the window; default: the kernel size.",
                        ge=1, pair=True)))


_WINDOW = "{layer.kernel_size[0]}x{layer.kernel_size[1]} window (stride {layer.stride[0]}x{layer.stride[1]})"


class _WindowPool(Layer):
    """A kh x kw window moved by (sh, sw) over each channel, without padding."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.spec.check(kernel_size=kernel_size, **({} if stride is None else {"stride": stride}))
        self.kernel_size = pair(kernel_size)
        self.stride = self.kernel_size if stride is None else pair(stride)

    def output_shape(self, in_shape):
        """(C, Ho, Wo) for (C, H, W), Ho = (H - kh) // sh + 1; ValueError if the window
        does not fit."""
        return (in_shape[0], *output_size(self, in_shape, self.kernel_size, self.stride))

    def _offsets(self, x):
        """The output size (Ho, Wo), and the view of x each kernel offset meets, in the
        window's row-major scan order."""
        size = self.output_shape(x.shape[1:])[1:]
        kh, kw = self.kernel_size
        return size, [offset_view(x, i, j, size, self.stride) for i in range(kh) for j in range(kw)]

    def _first_view(self, views):
        """A copy of the first view: where a pool starts."""
        return views[0].copy()

    def _spread(self, dx, parts):
        """dx with ``parts[o]``, (N, C, Ho, Wo), put at each offset o's view of it.

        Windows that never overlap (stride >= kernel) each own their pixels, so their
        parts are written; those of overlapping ones add up. Pixels no window covers
        get 0.
        """
        size, views = self._offsets(dx)
        disjoint = all(s >= k for s, k in zip(self.stride, self.kernel_size, strict=True))
        tiled = self.stride == self.kernel_size and dx.shape[2:] == tuple(
            n * k for n, k in zip(size, self.kernel_size, strict=True))
        if not tiled:
            dx.fill(0)
        for view, part in zip(views, parts, strict=True):
            if disjoint:
                np.multiply(*part, out=view)
            else:
                view += np.multiply(*part)
        return dx

    def __repr__(self):
        def show(value):
            return value[0] if value[0] == value[1] else value

        stride = "" if self.stride == self.kernel_size else f", stride={show(self.stride)}"
        return f"{type(self).__name__}(kernel_size={show(self.kernel_size)}{stride})"


class MaxPool2d(_WindowPool):
    """Maximum of each window, as torch.nn.MaxPool2d (no padding, no dilation).

    The gradient of a window goes to the input that holds its maximum; where several
    inputs tie, to the first in row-major order within the window, as PyTorch does.

    Args:
        kernel_size: kh x kw, an int or a pair.
        stride: step of the window, an int or a pair; default: the kernel size.

    Shape:
        x, dx: (N, C, H, W); out, dout: (N, C, Ho, Wo) with Ho = (H - kh) // sh + 1,
        Wo = (W - kw) // sw + 1.

    Attributes:
        params, grads, buffers: empty.
    """

    spec = _pool_spec("maxpool2d", "Maximum of each window, per channel.", Formulas(
        forward=["out = maximum of each " + _WINDOW],
        passes=["dx = dout at the first maximum of each window (row-major order, as PyTorch), 0 elsewhere"],
        caches=[("x", "(N, {i})"), ("out", "(N, {o})")]))

    def forward(self, x, training=True):
        _, views = self._offsets(x)
        out = self._first_view(views)
        for view in views[1:]:
            np.maximum(out, view, out=out)
        self._cache = (x, out)
        return out

    def backward(self, dout):
        """dx: dout routed to the first maximum of each window, zero elsewhere."""
        x, pooled = self._saved()
        _, views = self._offsets(x)
        unrouted = np.ones(pooled.shape, bool)  # windows whose maximum is not found yet
        hit = np.empty(pooled.shape, bool)

        def parts():
            """Per offset in scan order: (dout, where it holds its window's first maximum)."""
            for view in views:
                np.equal(view, pooled, out=hit)
                np.logical_and(hit, unrouted, out=hit)
                np.logical_xor(unrouted, hit, out=unrouted)
                yield dout, hit

        return self._spread(np.empty(x.shape, dout.dtype), parts())


class AvgPool2d(_WindowPool):
    """Mean of each window, as torch.nn.AvgPool2d (no padding).

    Args:
        kernel_size: kh x kw, an int or a pair.
        stride: step of the window, an int or a pair; default: the kernel size.

    Shape:
        x, dx: (N, C, H, W); out, dout: (N, C, Ho, Wo) with Ho = (H - kh) // sh + 1,
        Wo = (W - kw) // sw + 1.

    Attributes:
        params, grads, buffers: empty.
    """

    spec = _pool_spec("avgpool2d", "Mean of each window, per channel.", Formulas(
        forward=["out = mean of each " + _WINDOW],
        passes=["dx = dout / (kh * kw) added to every input of its window"],
        caches=[("the input shape", "(N, {i})")]))

    def forward(self, x, training=True):
        _, views = self._offsets(x)
        out = self._first_view(views)
        for view in views[1:]:
            out += view
        out *= out.dtype.type(1 / len(views))
        self._cache = x.shape
        return out

    def backward(self, dout):
        """dx: each window's dout / (kh * kw) on each of its inputs."""
        x_shape = self._saved()
        area = self.kernel_size[0] * self.kernel_size[1]
        share = dout.dtype.type(1 / area)
        return self._spread(np.empty(x_shape, dout.dtype), [(dout, share)] * area)


class GlobalAvgPool2d(Layer):
    """Mean of each channel over all its pixels: images (N, C, H, W) to features (N, C).

    The same as torch.nn.AdaptiveAvgPool2d(1) followed by a flatten.

    Shape:
        x, dx: (N, C, H, W); out, dout: (N, C).

    Attributes:
        params, grads, buffers: empty.
    """

    spec = LayerSpec(
        name="global_avgpool2d", doc="Mean of each channel over its pixels: (N, C, H, W) -> (N, C).",
        images=True, formulas=Formulas(
            forward=["out = mean of each channel over its H*W pixels"],
            passes=["dx = dout / (H*W) on every pixel of its channel"],
            caches=[("the input shape", "(N, {i})")]))

    def forward(self, x, training=True):
        self._cache = x.shape
        return np.mean(x, axis=(2, 3))

    def backward(self, dout):
        """dx: dout / (H * W) on every pixel of its channel."""
        n, c, h, w = self._saved()
        share = dout * dout.dtype.type(1 / (h * w))
        return np.array(np.broadcast_to(share[:, :, None, None], (n, c, h, w)))

    def output_shape(self, in_shape):
        image_size(self, in_shape)
        return in_shape[:1]
