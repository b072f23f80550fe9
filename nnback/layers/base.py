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

    def forward(self, x, training=True):
        """Compute the output and cache what backward needs.

        Args:
            x: input, (N, D) or images (N, C, H, W); only read.
            training: training mode (batch statistics, dropout masks) or evaluation.
        Returns:
            out: (N, *output_shape(x.shape[1:])).
        """
        raise NotImplementedError

    def backward(self, dout):
        """Return dx, x's shape, and overwrite ``grads``; ``dout``, out's shape, is only read.

        A layer with parameters also takes ``input_grad``: ``backward(dout,
        input_grad=False)`` overwrites ``grads`` and returns None, skipping the work of
        dx where it can (``Sequential.backward`` asks this of the first layer with
        parameters when nobody reads the input's gradient).
        """
        raise NotImplementedError

    @classmethod
    def parameter_shapes(cls) -> dict:
        """``{name: shape}`` of the parameters a layer built with these constructor
        keywords would have, known without allocating them. The keywords it takes are
        those of the constructor that set parameter sizes; none here (no parameters)."""
        return {}

    def working_values(self, in_shape, training):
        """Values of the working arrays one sample of ``in_shape`` adds besides the output
        and its gradient: to a training step (``training``) or to a forward pass alone
        (a convolution's im2col columns, and their gradient in training); 0 here."""
        return 0

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
