"""Layers: each a forward/backward pair with ``params``, ``grads`` and ``buffers``."""

from nnback.layers.activations import GELU, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh
from nnback.layers.base import Layer
from nnback.layers.dropout import Dropout
from nnback.layers.linear import Linear
from nnback.layers.norm import BatchNorm1d, LayerNorm

__all__ = ["BatchNorm1d", "Dropout", "GELU", "Layer", "LayerNorm", "LeakyReLU", "Linear",
           "ReLU", "Sigmoid", "Softplus", "Tanh"]
