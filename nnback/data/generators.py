"""Seeded synthetic data sets.

Each generator takes its parameters (the same names as the YAML keys) and a
``np.random.Generator`` and returns ``(X, y)``: X float32 (N, D); y int64 class
indices (N,) in class-major order for classification, float32 (N, T) for regression.
"""

from __future__ import annotations

import numpy as np


def spiral(classes: int, points_per_class: int, noise: float, rng: np.random.Generator):
    """The CS231n spiral: class j has r = linspace(0, 1, N),
    t = linspace(4j, 4(j+1), N) + noise * randn(N) and points (r sin t, r cos t)."""
    n = points_per_class
    r = np.tile(np.linspace(0.0, 1.0, n), classes)
    t = np.concatenate([np.linspace(4 * j, 4 * (j + 1), n) for j in range(classes)])
    t = t + noise * rng.standard_normal(t.shape)
    X = np.column_stack([r * np.sin(t), r * np.cos(t)])
    return X.astype(np.float32), np.repeat(np.arange(classes, dtype=np.int64), n)


def moons(points_per_class: int, noise: float, rng: np.random.Generator):
    """Two interleaving half circles: class 0 on top, class 1 shifted below."""
    a = np.linspace(0.0, np.pi, points_per_class)
    upper = np.column_stack([np.cos(a), np.sin(a)])
    lower = np.column_stack([1.0 - np.cos(a), 0.5 - np.sin(a)])
    return _noisy(np.vstack([upper, lower]), noise, rng), _class_major(2, points_per_class)


def circles(points_per_class: int, noise: float, inner_radius: float, rng: np.random.Generator):
    """Class 0 on the unit circle, class 1 on a circle of radius inner_radius."""
    a = np.linspace(0.0, 2 * np.pi, points_per_class, endpoint=False)
    ring = np.column_stack([np.cos(a), np.sin(a)])
    return _noisy(np.vstack([ring, inner_radius * ring]), noise, rng), _class_major(2, points_per_class)


def xor(points_per_class: int, noise: float, rng: np.random.Generator):
    """Points in [-1, 1]^2; class 1 where the coordinate signs differ."""
    n = points_per_class
    magnitude = rng.uniform(0.0, 1.0, size=(2 * n, 2))
    first = rng.choice([-1.0, 1.0], size=2 * n)
    second = np.concatenate([first[:n], -first[n:]])
    X = magnitude * np.column_stack([first, second])
    return _noisy(X, noise, rng), _class_major(2, n)


def blobs(classes: int, features: int, points_per_class: int, spread: float,
          rng: np.random.Generator):
    """Gaussian clusters of standard deviation spread around centres in [-10, 10]^features."""
    centres = rng.uniform(-10.0, 10.0, size=(classes, features))
    X = np.repeat(centres, points_per_class, axis=0)
    X = X + spread * rng.standard_normal(X.shape)
    return X.astype(np.float32), _class_major(classes, points_per_class)


def sine(samples: int, noise: float, rng: np.random.Generator):
    """x uniform in [-pi, pi], y = sin(x) + noise; X (N, 1), y (N, 1)."""
    x = rng.uniform(-np.pi, np.pi, size=(samples, 1))
    return x.astype(np.float32), _noisy(np.sin(x), noise, rng)


def linear(samples: int, features: int, targets: int, noise: float, rng: np.random.Generator):
    """X standard normal (N, F), y = X W + noise with W standard normal (F, T)."""
    W = rng.standard_normal((features, targets))
    X = rng.standard_normal((samples, features))
    return X.astype(np.float32), _noisy(X @ W, noise, rng)


def _noisy(values: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    return (values + noise * rng.standard_normal(values.shape)).astype(np.float32)


def _class_major(classes: int, per_class: int) -> np.ndarray:
    return np.repeat(np.arange(classes, dtype=np.int64), per_class)


GENERATORS = {"spiral": spiral, "moons": moons, "circles": circles, "xor": xor,
              "blobs": blobs, "sine": sine, "linear": linear}
REGRESSION = ("sine", "linear")
