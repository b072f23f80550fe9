"""Layers: each a forward/backward pair with ``params``, ``grads`` and ``buffers``.

Each layer class also carries a ``spec`` (``nnback.spec.LayerSpec``): its YAML name,
options, formulas and diagnostics flags. Importing a layer's module here is what
registers it (``nnback.registry``).
"""

from nnback.layers.activations import GELU, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh
from nnback.layers.base import Layer
from nnback.layers.conv import Conv2d
from nnback.layers.dropout import Dropout
from nnback.layers.linear import Linear
from nnback.layers.norm import BatchNorm1d, BatchNorm2d, LayerNorm
from nnback.layers.pool import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from nnback.layers.shape import Flatten

__all__ = ["AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "Dropout", "Flatten", "GELU",
           "GlobalAvgPool2d", "Layer", "LayerNorm", "LeakyReLU", "Linear", "MaxPool2d", "ReLU",
           "Sigmoid", "Softplus", "Tanh"]
