"""Sequential: a stack of layers run forward in order and backward in reverse."""

import numpy as np


class Sequential:
    """Layers applied one after the other.

    Parameters and buffers are named ``"<layer index>.<key>"`` (``"0.W"``, ``"2.b"``,
    ``"3.running_mean"``); the same names key optimizer state and checkpoint arrays.

    Memory layout: the constructor moves every parameter into one contiguous array
    and every gradient into another (``layer.params[key]`` and ``layer.grads[key]``
    become views of them, with the same values), so an optimizer updates the whole
    model with a few element-wise operations. Hold on to the arrays of a layer only
    after it is in its model.

    Buffer reuse: a training-mode ``forward`` without ``trace`` writes the hidden
    activations into arrays the model keeps for that batch size, and ``backward``
    does the same with the hidden gradients, so a step allocates only the scores it
    returns (and dx, if asked for). The arrays ``forward`` and ``backward`` return are
    always new; the ones in a ``trace`` list are new too (a traced pass allocates).

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
        input_shape: as given.
    """

    def __init__(self, layers, input_shape=None):
        self.layers = list(layers)
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.training = True
        dtypes = {p.dtype for _, p, _ in self.parameters()}
        if len(dtypes) > 1:
            raise ValueError(f"all parameters must share one dtype, got {sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
        _pack(self.layers, "params", self.dtype)
        _pack(self.layers, "grads", self.dtype)
        self._first_trained = next((i for i, layer in enumerate(self.layers) if layer.params),
                                   len(self.layers))
        self._workspace = None
        self._x_shape = None  # the shape of the last forward's input, for dx

    def shaped_input(self, x):
        """x as the first layer takes it: the model's dtype, rows reshaped to input_shape."""
        out = np.asarray(x, dtype=self.dtype)
        return out if self.input_shape is None else out.reshape(len(out), *self.input_shape)

    def forward(self, x, training=None, trace=None):
        """x: (N, D_in) -> out: (N, D_out), a new array; ``training`` defaults to ``self.training``.

        trace: optional list; each layer's output is appended to it, first layer first.
        """
        training = self.training if training is None else training
        self._x_shape = np.shape(x)
        out = self.shaped_input(x)
        if not training or trace is not None or not self.layers:
            for layer in self.layers:
                out = layer.forward(out, training)
                if trace is not None:
                    trace.append(out)
            return out
        buffers = self._buffers_for(out).activations
        for layer, buffer in zip(self.layers, buffers):
            out = layer.forward(out, training, out=buffer)
        return _fresh(out, buffers)

    def backward(self, dout, trace=None, input_grad=True):
        """dout: (N, D_out) -> dx: (N, D_in), a new array; overwrites every layer's grads.

        trace: optional list; each layer's dx is appended to it, last layer first.
        input_grad: compute and return dx. With False, layers below the first one
            with parameters are skipped, that layer computes only its grads (no
            input-gradient product: a third of its matrix-multiply work) and None is
            returned; a training step never reads dx.
        """
        workspace = self._workspace
        if trace is not None or workspace is None or workspace.batch != len(dout):
            for layer in reversed(self.layers):
                dout = layer.backward(dout)
                if trace is not None:
                    trace.append(dout)
            return dout.reshape(self._x_shape) if input_grad else None
        last = 0 if input_grad else self._first_trained
        for i in range(len(self.layers) - 1, last - 1, -1):
            layer = self.layers[i]
            if i == last and not input_grad:
                if layer.params:
                    layer.backward_params(dout)
                return None
            dout = layer.backward(dout, out=workspace.gradients[i])
        return _fresh(dout, workspace.gradients).reshape(self._x_shape)

    def _buffers_for(self, x):
        """The workspace for x's batch size, (re)allocated when that size changes."""
        workspace = self._workspace
        if workspace is None or workspace.batch != len(x) or workspace.sample_shape != x.shape[1:]:
            workspace = self._workspace = _Workspace(self.layers, len(x), x.shape[1:], self.dtype)
        return workspace

    def parameters(self):
        """Yield ``(name, param, grad)`` for every parameter, in layer order."""
        for i, layer in enumerate(self.layers):
            for key, param in layer.params.items():
                yield f"{i}.{key}", param, layer.grads[key]

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
        return sum(param.size for _, param, _ in self.parameters())

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        return self.layers[index]

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        lines = [f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + "\n)"


class _Workspace:
    """Arrays a model reuses across steps of one batch size.

    Attributes:
        batch, sample_shape: N and the shape of one input sample they were made for.
        activations: per layer, the array its forward writes into; None for the last
            layer, whose output is returned to the caller.
        gradients: per layer, the array its backward writes dx into; None for the
            first layer, whose dx is returned to the caller.
    """

    def __init__(self, layers, batch, sample_shape, dtype):
        self.batch, self.sample_shape = batch, sample_shape
        shapes = [sample_shape]
        for layer in layers:
            shapes.append(layer.output_shape(shapes[-1]))
        self.activations = [np.empty((batch, *s), dtype) for s in shapes[1:-1]] + [None]
        self.gradients = [None] + [np.empty((batch, *s), dtype) for s in shapes[1:-1]]


def _fresh(result, buffers):
    """``result``, copied if it is one of the model's reused ``buffers`` (an identity
    layer at the end of the chain passes a buffer through)."""
    for buffer in buffers:
        if result is buffer:
            return result.copy()
    return result


def _pack(layers, attribute, dtype):
    """Move the arrays of ``layer.<attribute>`` (params or grads) into one flat array.

    Each array is replaced by a view of the flat array holding the same values, in
    the order ``Sequential.parameters()`` yields them.
    """
    arrays = [(getattr(layer, attribute), key) for layer in layers for key in layer.params]
    flat = np.empty(sum(d[key].size for d, key in arrays), dtype)
    start = 0
    for d, key in arrays:
        view = flat[start:start + d[key].size].reshape(d[key].shape)
        np.copyto(view, d[key])
        d[key] = view
        start += d[key].size
