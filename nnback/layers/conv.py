"""2-D convolution by im2col: one matrix multiply forward, two backward."""

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from nnback.init import INITIALIZERS
from nnback.layers.base import Layer
from nnback.layers.window import output_size, pair
from nnback.spec import REQUIRED, Formulas, LayerSpec, Option


class Conv2d(Layer):
    """Cross-correlation of images with F learned filters, as torch.nn.Conv2d.

    With K = C * kh * kw patch values and P = Ho * Wo output pixels per image:

    - forward: ``cols = im2col(x)``, (K, N * P), one column per output pixel holding
      the (zero-padded) input patch under the window there; then one GEMM
      ``out = W.reshape(F, K) @ cols + b``, (F, N * P), stored as (N, F, Ho, Wo).
      (With stride 1 and F < K the matrices have kw - 1 more columns per output
      row, which makes im2col copy long runs; see ``_Columns``.)
    - backward, with ``dmat`` = dout as an (F, N * P) matrix:
      ``dW = dmat @ cols.T`` (the sum over the batch of dout correlated with x),
      ``db`` = dmat summed over its columns, and ``dcols = W.reshape(F, K).T @ dmat``,
      which col2im adds back to the pixels each patch came from: dx, the full
      convolution of dout with the filters rotated by 180 degrees. col2im loops over
      the kh * kw kernel offsets, never over samples or pixels.

    The im2col matrix and the other working arrays of a training pass are kept and
    reused while the input shape stays the same, so steady-state training steps
    allocate only the output and dx.

    Args:
        in_channels: C.
        out_channels: F, the number of filters.
        kernel_size: kh x kw, an int for a square window or a pair (kh, kw).
        stride: step of the window, an int or a pair (sh, sw).
        padding: zeros added on each side, an int or a pair (ph, pw).
        bias: whether to add the learned bias ``b``.
        init: weight initialiser (see ``nnback.init``), with fan_in = C * kh * kw and
            fan_out = F * kh * kw as in PyTorch.
        dtype: dtype of the parameters.
        rng: np.random.Generator the weights are drawn from; a fresh unseeded one if None.

    Shape:
        x: (N, C, H, W); out, dout: (N, F, Ho, Wo) with
        Ho = (H + 2 * ph - kh) // sh + 1 and Wo = (W + 2 * pw - kw) // sw + 1;
        dx: (N, C, H, W).

    Attributes:
        params["W"]: (F, C, kh, kw), the PyTorch and ONNX layout; ``W.reshape(F, K)``
            is the im2col weight matrix.
        params["b"]: (F,), zeros (absent when ``bias=False``).

    Example:
        >>> conv = Conv2d(1, 16, 3, padding=1, rng=np.random.default_rng(0))
        >>> conv.forward(np.zeros((32, 1, 8, 8), np.float32)).shape
        (32, 16, 8, 8)
    """

    spec = LayerSpec(
        name="conv2d", doc="2-D convolution of images (N, C, H, W).", images=True, sized_by="channels",
        options=(
            Option("channels", int, REQUIRED, "Output channels (filters); input channels come "
                   "from the data.", gt=0, arg="out_channels"),
            Option("kernel", int, REQUIRED, "Window size: 3 for 3x3, or [kh, kw].", ge=1,
                   pair=True, arg="kernel_size"),
            Option("stride", int, 1, "Step of the window: an int or [sh, sw].", ge=1, pair=True),
            Option("padding", int, 0, "Zeros added on each side: an int or [ph, pw].", ge=0,
                   pair=True),
            Option("bias", bool, True, "Learn a bias per output channel."),
            Option("init", str, "he_normal", "Weight initialisation (fans of the kernel); biases "
                   "start at zero.", choices=tuple(INITIALIZERS)),
        ),
        formulas=Formulas(
            forward=["cols = im2col(x): ({k}, N*{p}), column (n, row, col) = the zero-padded patch of x",
                     "       under the {layer.kernel_size[0]}x{layer.kernel_size[1]} window at that "
                     "position (padding {layer.padding[0]}x{layer.padding[1]}, stride "
                     "{layer.stride[0]}x{layer.stride[1]})",
                     "{spare}",
                     "out = W.reshape({f}, {k}) @ cols{bias}   (one GEMM), stored as (N, {o})"],
            passes=["dcols = W.reshape({f}, {k}).T @ dout_mat   (dout_mat = dout as ({f}, N*{p}))",
                    "dx = col2im(dcols): each patch value added back to the pixel it came from,",
                    "     one strided add per kernel offset: dx = dout ⋆ rot180(W), the full convolution"],
            keeps=[("W", "dW = (dout_mat @ cols.T).reshape({w}) = sum over N of dout ⋆ x"),
                   ("b", "db = sum over N, Ho, Wo of dout")],
            caches=[("cols", "({k}, N*{p})")],
        ),
    )

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 init="he_normal", dtype=np.float32, rng=None):
        super().__init__()
        self.spec.check(out_channels=out_channels, kernel_size=kernel_size, stride=stride,
                        padding=padding, init=init)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride)
        self.padding = pair(padding)
        self.init = init
        self.dtype = np.dtype(dtype)
        self.params["W"] = np.empty((out_channels, in_channels, *self.kernel_size), self.dtype)
        if bias:
            self.params["b"] = np.empty(out_channels, self.dtype)
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self._workspace = None
        self.reset_parameters(np.random.default_rng() if rng is None else rng)

    @classmethod
    def parameter_shapes(cls, in_channels, out_channels, kernel_size, bias=True):
        """W: (F, C, kh, kw) and b: (F,)."""
        return {"W": (out_channels, in_channels, *pair(kernel_size)),
                **({"b": (out_channels,)} if bias else {})}

    def reset_parameters(self, rng):
        """Redraw W with the layer's initialiser from ``rng``; set b to zeros."""
        area = self.kernel_size[0] * self.kernel_size[1]
        weights = self.params["W"]
        weights[...] = INITIALIZERS[self.init](self.in_channels * area, self.out_channels * area,
                                               rng, self.dtype, shape=weights.shape)
        if "b" in self.params:
            self.params["b"].fill(0)

    def forward(self, x, training=True):
        """x: (N, C, H, W) -> out: (N, F, Ho, Wo)."""
        ws = self._workspace_for(x, keep=training)
        mat = np.matmul(self._weight_matrix(), ws.im2col(x), out=ws.mat)
        out = np.empty((len(x), self.out_channels, *ws.out_size), mat.dtype)
        self._cache = ws
        return ws.output(mat, self.params.get("b"), out)

    def backward(self, dout, input_grad=True):
        """dout: (N, F, Ho, Wo) -> dx: (N, C, H, W); fills dW and db.

        With ``input_grad=False`` only dW and db are computed and None is returned.
        """
        ws = self._saved()
        dmat = self._param_grads(dout, ws)
        if not input_grad:
            return None
        dcols = np.matmul(self._weight_matrix().T, dmat, out=ws.dcols())
        return ws.col2im(dcols)

    def _param_grads(self, dout, ws):
        """Fill dW and db; return dout as the GEMM-shaped matrix ``dmat``."""
        dmat = ws.dout_matrix(dout)
        np.matmul(dmat, ws.cols.T, out=self.grads["W"].reshape(self.out_channels, -1))
        if "b" in self.grads:
            np.matmul(dmat, ws.ones(), out=self.grads["b"])
        return dmat

    def _weight_matrix(self):
        """W as the (F, K) matrix of the GEMM (a view)."""
        return self.params["W"].reshape(self.out_channels, -1)

    def _workspace_for(self, x, keep):
        """The working arrays for x: the kept ones if they fit, else new ones, kept for
        the next step if ``keep`` (training), so an evaluation pass over large batches
        neither holds on to its arrays nor replaces the training ones."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r} expects (N, {self.in_channels}, H, W) input, got {x.shape}")
        ws = self._workspace
        dtype = np.result_type(x, self.params["W"])
        if ws is None or ws.x_shape != x.shape or ws.dtype != dtype:
            ws = _Columns(x.shape, dtype, self.kernel_size, self.stride, self.padding,
                          self.out_channels, self.output_shape(x.shape[1:])[1:])
            if keep:
                self._workspace = ws
        return ws

    def output_shape(self, in_shape):
        """(F, Ho, Wo) for (C, H, W); ValueError if the window does not fit."""
        if len(in_shape) == 3 and in_shape[0] != self.in_channels:
            raise ValueError(f"{self!r} expects {self.in_channels} input channels, got {in_shape[0]}")
        return (self.out_channels,
                *output_size(self, in_shape, self.kernel_size, self.stride, self.padding))

    def columns_shape(self, in_shape, batch):
        """Shape (K, N * Ho * Wg) of the im2col matrix for ``batch`` (C, H, W) inputs."""
        _, *out_size = self.output_shape(in_shape)
        patch = self.params["W"][0].size
        ho, wg = _grid(out_size, in_shape[2] + 2 * self.padding[1], self.stride, self.out_channels, patch)
        return (patch, batch * ho * wg)

    def working_values(self, in_shape, training):
        """The im2col columns of one sample, K * Ho * Wg, and in training their gradient."""
        return (2 if training else 1) * math.prod(self.columns_shape(in_shape, 1))

    def formula_sizes(self, in_shape):
        """For the formulas: K, the grid of window positions per image, F, W's shape and
        a line on spare positions (see ``_Columns``)."""
        patch, positions = self.columns_shape(in_shape, 1)
        _, rows, width = self.output_shape(in_shape)
        spare = positions // rows - width
        note = (f"       ({spare} spare positions per row make each image's rows one run to copy; "
                f"their outputs are dropped)") if spare else ""
        return {"k": patch, "p": f"{rows}*{positions // rows}", "f": self.out_channels,
                "w": self.params["W"].shape, "spare": note}

    def __repr__(self):
        def show(value):
            return value[0] if value[0] == value[1] else value

        options = [f"kernel_size={show(self.kernel_size)}"]
        if self.stride != (1, 1):
            options.append(f"stride={show(self.stride)}")
        if self.padding != (0, 0):
            options.append(f"padding={show(self.padding)}")
        if "b" not in self.params:
            options.append("bias=False")
        return f"Conv2d({self.in_channels}, {self.out_channels}, {', '.join(options)})"


def _grid(out_size, padded_width, stride, filters, patch):
    """(Ho, Wg): the window positions an im2col matrix has columns for (see _Columns)."""
    spare = stride == (1, 1) and filters < patch
    return (out_size[0], padded_width if spare else out_size[1])


class _Columns:
    """The working arrays of one Conv2d for one input shape, reused from step to step.

    The input is copied into a zero-bordered buffer ``padded``, (N, C, Hp, Wp). The
    columns of the im2col matrix run over a grid (N, Ho, Wg) of window positions. With
    stride 1 and fewer filters than patch values (F < K) the grid is Wg = Wp wide,
    kw - 1 positions wider than the output, so that the Ho * Wp positions of one image
    are one contiguous run of the buffer: im2col and col2im copy each patch row
    (c, i, j) as N long runs instead of N * Ho short ones, while the output and dout,
    F rows instead of K, pay for the spare positions. These hold values no output
    uses: forward drops them, and backward gives them a zero gradient. Otherwise the
    grid is the output, Wg = Wo.

    Attributes:
        x_shape, dtype: the input they were made for; out_size: (Ho, Wo).
        padded: (N, C, Hp, Wp), x inside a zero border.
        cols: (K, N * Ho * Wg) im2col matrix; mat: (F, N * Ho * Wg), the forward GEMM.
        Backward adds dmat (like mat, zero at spare positions), dcols (like cols), a
        padded dx and a ones vector on first use.
    """

    def __init__(self, x_shape, dtype, kernel, stride, padding, channels_out, out_size):
        n, c, h, w = x_shape
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        hp, wp = h + 2 * ph, w + 2 * pw
        self.x_shape, self.dtype, self.out_size, self.padding = x_shape, dtype, out_size, padding
        self.grid = _grid(out_size, wp, stride, channels_out, c * kh * kw)
        plane, columns = hp * wp, n * self.grid[0] * self.grid[1]
        # kw - 1 zeros past the last image: the spare positions of its last row read them
        self._flat = np.zeros(n * c * plane + kw - 1, dtype)
        self.padded = self._flat[:n * c * plane].reshape(n, c, hp, wp)
        # patch value (c, i, j) at grid position (n, ho, wo) is padded[n, c, ho*sh + i, wo*sw + j]
        self._patches = self._view(self._flat, (c, kh, kw, n, *self.grid),
                                   (plane, wp, 1, c * plane, sh * wp, sw))
        self.cols = np.empty((c * kh * kw, columns), dtype)
        self.mat = np.empty((channels_out, columns), dtype)
        self.kernel = kernel
        self._made = {}  # backward's arrays, made on first use
        # col2im's views: where each kernel offset (i, j) meets the padded dx
        self._offset_steps = ((c, n, *self.grid), (plane, c * plane, sh * wp, sw))
        self._offset_starts = [i * wp + j for i in range(kh) for j in range(kw)]

    def _view(self, flat, shape, steps, start=0):
        """A read/write strided view of ``flat[start:]``, steps counted in elements."""
        item = flat.itemsize
        return as_strided(flat[start:], shape, tuple(item * s for s in steps))

    def im2col(self, x):
        """Copy the patches of x, (N, C, H, W), into ``cols``; return it."""
        (ph, pw), (_, _, h, w) = self.padding, self.x_shape
        self.padded[:, :, ph:ph + h, pw:pw + w] = x
        np.copyto(self.cols.reshape(self._patches.shape), self._patches)
        return self.cols

    def output(self, mat, bias, out):
        """The (F, N * Ho * Wg) GEMM result as (N, F, Ho, Wo) images plus bias, in ``out``."""
        ho, wo = self.out_size
        images = mat.reshape(len(mat), -1, *self.grid)[..., :wo].transpose(1, 0, 2, 3)
        if bias is None:
            np.copyto(out, images)
        else:
            np.add(images, bias[:, None, None], out=out)
        return out

    def dout_matrix(self, dout):
        """dout, (N, F, Ho, Wo), as the (F, N * Ho * Wg) matrix dmat (zero at spare positions)."""
        dmat = self._once("dmat", lambda: np.zeros_like(self.mat))
        wo = self.out_size[1]
        np.copyto(dmat.reshape(len(dmat), -1, *self.grid)[..., :wo], dout.transpose(1, 0, 2, 3))
        return dmat

    def col2im(self, dcols):
        """Add each column of dcols, (K, N * Ho * Wg), back onto the pixels its patch came
        from: one strided add per kernel offset (i, j). Returns dx, (N, C, H, W), a new array."""
        n, c, h, w = self.x_shape
        out = np.empty(self.x_shape, self.dtype)
        dflat = self._once("dflat", lambda: np.empty_like(self._flat))
        offsets = self._once("offsets", lambda: [self._view(dflat, *self._offset_steps, start=start)
                                                 for start in self._offset_starts])
        dflat.fill(0)
        by_offset = dcols.reshape(c, len(offsets), n, *self.grid)
        for o, view in enumerate(offsets):
            view += by_offset[:, o]
        (ph, pw) = self.padding
        padded = dflat[:self.padded.size].reshape(self.padded.shape)
        np.copyto(out, padded[:, :, ph:ph + h, pw:pw + w])
        return out

    def dcols(self):
        """The (K, N * Ho * Wg) array dcols is written into."""
        return self._once("dcols", lambda: np.empty_like(self.cols))

    def ones(self):
        """A ones vector (N * Ho * Wg,): ``dmat @ ones`` sums over the columns."""
        return self._once("ones", lambda: np.ones(self.cols.shape[1], self.dtype))

    def _once(self, name, make):
        """Backward's array ``name``, made by ``make()`` on first use and kept."""
        if name not in self._made:
            self._made[name] = make()
        return self._made[name]
