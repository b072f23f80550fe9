"""Sequential: a stack of layers run forward in order and backward in reverse."""

import numpy as np


class Sequential:
    """Layers applied one after the other.

    Parameters and buffers are named ``"<layer index>.<key>"`` (``"0.W"``, ``"2.b"``,
    ``"3.running_mean"``); the same names key optimizer state and checkpoint arrays.

    Args:
        layers: the layers, first applied first. All parameters must share one dtype.

    Shape:
        x: (N, D_in); out: (N, D_out); dout: (N, D_out); dx: (N, D_in).

    Attributes:
        layers: the list of layers.
        training: the mode ``forward`` uses by default; set by ``train()`` / ``eval()``.
        dtype: the parameters' dtype (float32 when there are none); inputs are cast to it.
    """

    def __init__(self, layers):
        self.layers = list(layers)
        self.training = True
        dtypes = {p.dtype for _, p, _ in self.parameters()}
        if len(dtypes) > 1:
            raise ValueError(f"all parameters must share one dtype, got {sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop() if dtypes else np.dtype(np.float32)

    def forward(self, x, training=None, trace=None):
        """x: (N, D_in) -> out: (N, D_out); ``training`` defaults to ``self.training``.

        trace: optional list; each layer's output is appended to it, first layer first.
        """
        training = self.training if training is None else training
        out = np.asarray(x, dtype=self.dtype)
        for layer in self.layers:
            out = layer.forward(out, training)
            if trace is not None:
                trace.append(out)
        return out

    def backward(self, dout, trace=None):
        """dout: (N, D_out) -> dx: (N, D_in); overwrites every layer's grads.

        trace: optional list; each layer's dx is appended to it, last layer first.
        """
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
            if trace is not None:
                trace.append(dout)
        return dout

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
