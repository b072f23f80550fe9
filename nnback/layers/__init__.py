"""Layers: each a forward/backward pair with ``params``, ``grads`` and ``buffers``.

Each layer class also carries a ``spec`` (``nnback.spec.LayerSpec``): its YAML name,
options, formulas and diagnostics flags. Importing a layer's module here is what
registers it (``nnback.registry``).
"""

from nnback.layers.activations import GELU, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh
from nnback.layers.base import Layer
from nnback.layers.dropout import Dropout
from nnback.layers.linear import Linear
from nnback.layers.norm import BatchNorm1d, LayerNorm

__all__ = ["BatchNorm1d", "Dropout", "GELU", "Layer", "LayerNorm", "LeakyReLU", "Linear",
           "ReLU", "Sigmoid", "Softplus", "Tanh"]
