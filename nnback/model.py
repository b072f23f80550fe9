"""Sequential: a stack of layers run forward in order and backward in reverse."""

import numpy as np


class Parameters(list):
    """A model's ``(name, param, grad)`` triples, in layer order, with the packed arrays
    their params and grads are views of.

    Attributes:
        flat_params: 1-D array; the params are consecutive views of it, in this order.
        flat_grads: 1-D array; the grads likewise.
    """

    def __init__(self, triples, flat_params, flat_grads):
        super().__init__(triples)
        self.flat_params = flat_params
        self.flat_grads = flat_grads


class Sequential:
    """Layers applied one after the other.

    Parameters and buffers are named ``"<layer index>.<key>"`` (``"0.W"``, ``"2.b"``,
    ``"3.running_mean"``); the same names key optimizer state and checkpoint arrays.

    Packing: the constructor moves every parameter into one 1-D array, ``flat_params``,
    and every gradient into another, ``flat_grads``: ``layer.params[key]`` and
    ``layer.grads[key]`` become views of them, in the order ``parameters()`` lists them,
    with the same values. An optimizer given ``parameters()`` updates the whole model
    with a few element-wise operations on the packed arrays, and a gradient norm is one
    dot product. Hold on to the arrays of a layer only after it is in its model.

    Args:
        layers: the layers, first applied first. All parameters must share one dtype.
        input_shape: the shape of one sample as the first layer takes it, e.g.
            (C, H, W) for images; inputs arrive as rows (N, D) and are reshaped to
            (N, *input_shape). None: inputs go to the first layer as they are.

    Shape:
        x: (N, D_in), or (N, *input_shape); out: (N, D_out); dout: (N, D_out);
        dx: x's shape.

    Attributes:
        layers: the list of layers.
        training: the mode ``forward`` uses by default; set by ``train()`` / ``eval()``.
        dtype: the parameters' dtype (float32 when there are none); inputs are cast to it.
        flat_params, flat_grads: the packed parameters and gradients, 1-D.
        input_shape: as given.
    """

    def __init__(self, layers, input_shape=None):
        self.layers = list(layers)
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.training = True
        dtypes = {p.dtype for layer in self.layers for p in layer.params.values()}
        if len(dtypes) > 1:
            raise ValueError(f"all parameters must share one dtype, got {sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
        self.flat_params = _pack(self.layers, "params", self.dtype)
        self.flat_grads = _pack(self.layers, "grads", self.dtype)
        self._first_trained = next((i for i, layer in enumerate(self.layers) if layer.params),
                                   None)
        self._x_shape = None  # the shape of the last forward's input, for dx

    def shaped_input(self, x):
        """x as the first layer takes it: the model's dtype, rows reshaped to input_shape."""
        out = np.asarray(x, dtype=self.dtype)
        return out if self.input_shape is None else out.reshape(len(out), *self.input_shape)

    def forward(self, x, training=None, trace=None):
        """x: (N, D_in) -> out: (N, D_out); ``training`` defaults to ``self.training``.

        trace: optional list; each layer's output is appended to it, first layer first.
        """
        training = self.training if training is None else training
        out = self.shaped_input(x)
        self._x_shape = out.shape if self.input_shape is None else np.shape(x)
        for layer in self.layers:
            out = layer.forward(out, training)
            if trace is not None:
                trace.append(out)
        return out

    def backward(self, dout, trace=None, input_grad=True):
        """dout: (N, D_out) -> dx, shaped like the last forward's x; overwrites every layer's grads.

        trace: optional list; each layer's dx is appended to it, last layer first.
        input_grad: compute and return dx. With False, layers below the first one
            with parameters are skipped, that layer fills only its grads (a Linear
            layer skips the input-gradient product: a third of its matrix-multiply
            work) and None is returned; a training step never reads dx.
        """
        last = 0 if input_grad else self._first_trained  # the lowest layer that runs
        if last is None:  # no layer has parameters
            return None
        for i in range(len(self.layers) - 1, last - 1, -1):
            if i == last and not input_grad:
                self.layers[i].backward(dout, input_grad=False)
                return None
            dout = self.layers[i].backward(dout)
            if trace is not None:
                trace.append(dout)
        return dout.reshape(self._x_shape)

    def parameters(self):
        """``(name, param, grad)`` for every parameter, in layer order, as ``Parameters``
        (a list that also carries ``flat_params`` and ``flat_grads``)."""
        triples = [(f"{i}.{key}", param, layer.grads[key])
                   for i, layer in enumerate(self.layers) for key, param in layer.params.items()]
        return Parameters(triples, self.flat_params, self.flat_grads)

    def buffers(self):
        """Yield ``(name, array)`` for every buffer, in layer order."""
        for i, layer in enumerate(self.layers):
            for key, buffer in layer.buffers.items():
                yield f"{i}.{key}", buffer

    def _named_arrays(self):
        named = {name: param for name, param, _ in self.parameters()}
        named.update(self.buffers())
        return named

    def state_dict(self):
        """Return copies of all parameters and buffers by name."""
        return {name: array.copy() for name, array in self._named_arrays().items()}

    def load_state_dict(self, state):
        """Copy ``state`` into the model's arrays, in place.

        Raises:
            ValueError: naming every missing, unexpected and shape-mismatched key;
                nothing is copied then.
        """
        own = self._named_arrays()
        problems = []
        missing = [name for name in own if name not in state]
        unexpected = [name for name in state if name not in own]
        if missing:
            problems.append("missing keys: " + ", ".join(missing))
        if unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        for name, array in own.items():
            if name in state and np.shape(state[name]) != array.shape:
                problems.append(f"shape mismatch for {name}: "
                                f"state has {np.shape(state[name])}, model has {array.shape}")
        if problems:
            raise ValueError("state dict does not match the model: " + "; ".join(problems))
        for name, array in own.items():
            np.copyto(array, state[name])

    def train(self):
        """Switch to training mode; returns self."""
        self.training = True
        return self

    def eval(self):
        """Switch to evaluation mode; returns self."""
        self.training = False
        return self

    def num_parameters(self):
        """Total number of trained scalars."""
        return self.flat_params.size

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        return self.layers[index]

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        lines = [f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + "\n)"


def _pack(layers, attribute, dtype):
    """Move the arrays of ``layer.<attribute>`` (params or grads) into one 1-D array.

    Each array is replaced by a view of it holding the same values, in the order
    ``Sequential.parameters()`` lists them. Returns the 1-D array.
    """
    arrays = [(getattr(layer, attribute), key) for layer in layers for key in layer.params]
    flat = np.empty(sum(d[key].size for d, key in arrays), dtype)
    start = 0
    for d, key in arrays:
        view = flat[start:start + d[key].size].reshape(d[key].shape)
        np.copyto(view, d[key])
        d[key] = view
        start += d[key].size
    return flat
