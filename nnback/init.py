"""Weight initialisers: He (Kaiming) and Xavier (Glorot), uniform and normal.

Each returns a ``(fan_in, fan_out)`` array (or an array of the ``shape`` given, e.g. a
convolution's ``(out, in, kh, kw)``) drawn from the generator it is given, so the same
seed always gives the same weights.
"""

import math

import numpy as np


def _normal(std, fan_in, fan_out, rng, dtype, shape):
    w = rng.standard_normal(shape or (fan_in, fan_out), dtype=dtype)
    w *= std
    return w


def _uniform(bound, fan_in, fan_out, rng, dtype, shape):
    w = rng.random(shape or (fan_in, fan_out), dtype=dtype)
    w *= 2 * bound
    w -= bound
    return w


def he_normal(fan_in, fan_out, rng, dtype=np.float32, shape=None):
    """N(0, 2 / fan_in): keeps the activation variance through ReLU layers."""
    return _normal(math.sqrt(2.0 / fan_in), fan_in, fan_out, rng, dtype, shape)


def he_uniform(fan_in, fan_out, rng, dtype=np.float32, shape=None):
    """U(-sqrt(6 / fan_in), sqrt(6 / fan_in)): the uniform form of ``he_normal``."""
    return _uniform(math.sqrt(6.0 / fan_in), fan_in, fan_out, rng, dtype, shape)


def xavier_normal(fan_in, fan_out, rng, dtype=np.float32, shape=None):
    """N(0, 2 / (fan_in + fan_out)): for tanh / sigmoid layers."""
    return _normal(math.sqrt(2.0 / (fan_in + fan_out)), fan_in, fan_out, rng, dtype, shape)


def xavier_uniform(fan_in, fan_out, rng, dtype=np.float32, shape=None):
    """U(-sqrt(6 / (fan_in + fan_out)), +sqrt(...)): the uniform form of ``xavier_normal``."""
    return _uniform(math.sqrt(6.0 / (fan_in + fan_out)), fan_in, fan_out, rng, dtype, shape)


# The YAML name of an initialiser is its function's name (``init: xavier_uniform``).
INITIALIZERS = {fn.__name__: fn for fn in (he_normal, he_uniform, xavier_normal, xavier_uniform)}
