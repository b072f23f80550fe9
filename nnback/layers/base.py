"""The layer contract every layer of nnback follows."""


class Cached:
    """Holds the one private forward cache that backward reads.

    ``forward`` replaces ``self._cache``; ``backward`` reads it through ``_saved()``,
    which raises a clear error when there was no forward pass.
    """

    _cache = None

    def _saved(self):
        """Return what the last forward cached; RuntimeError if forward never ran."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._cache


class Layer(Cached):
    """A differentiable stage of a network: a forward/backward pair.

    Attributes:
        params: trained arrays by name, e.g. ``{"W": (D_in, D_out), "b": (D_out,)}``;
            empty for layers without parameters.
        grads: arrays with the same keys and shapes as ``params``; every ``backward``
            overwrites them (no accumulation).
        buffers: non-trained state saved with the model (BatchNorm running statistics);
            empty otherwise.
    """

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}

    def forward(self, x, training=True, out=None):
        """Compute the output and cache what backward needs.

        Args:
            x: input, (N, D) or images (N, C, H, W); only read.
            training: training mode (batch statistics, dropout masks) or evaluation.
            out: optional array of the output's shape and dtype, not ``x``, that the
                layer writes its result into instead of allocating one. A layer may
                still return another array (an identity layer returns ``x``): always
                use the returned array. The cache may reference ``x`` and ``out``, so
                the caller must leave both untouched until the matching backward.
        Returns:
            out: (N, *output_shape(x.shape[1:])).
        """
        raise NotImplementedError

    def backward(self, dout, out=None):
        """Return dx, x's shape, and overwrite ``grads``; ``dout``, out's shape, is only read.

        out: optional array of dx's shape and dtype, not ``dout``, to write dx into
        (the same rule as ``forward``: always use the returned array).
        """
        raise NotImplementedError

    def backward_params(self, dout):
        """Overwrite ``grads`` from ``dout`` without returning dx.

        For the first trained layer of a model, whose input gradient nobody reads;
        layers that can skip the work of dx override this.
        """
        self.backward(dout)

    def output_features(self, in_features):
        """Number of output features for ``in_features`` input features."""
        return in_features

    def output_shape(self, in_shape):
        """Shape of one sample's output for one sample's input shape ``in_shape``: (D,)
        for feature rows, (C, H, W) for images. The default, for element-wise layers,
        keeps any shape.

        Raises:
            ValueError: the layer cannot take that shape; the message names both.
        """
        return tuple(in_shape)

    def __repr__(self):
        return f"{type(self).__name__}()"


def flat_features(layer, in_shape):
    """D of a (D,) sample shape; ValueError naming ``layer`` for images (C, H, W)."""
    if len(in_shape) != 1:
        raise ValueError(f"{type(layer).__name__} needs flat input (N, D), got "
                         f"(N, {', '.join(map(str, in_shape))}): flatten it first")
    return in_shape[0]
