"""Synthetic data sets: shapes, dtypes, seeding and the notes' spiral formula."""

import numpy as np
import pytest

from nnback.data.generators import GENERATORS, blobs, circles, moons, spiral, xor


def test_spiral_matches_the_notes_formula():
    K, N = 3, 100
    X, y = spiral(K, N, 0.2, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    noise = 0.2 * rng.standard_normal(K * N)
    for j in range(K):
        r = np.linspace(0.0, 1.0, N)
        t = np.linspace(4 * j, 4 * (j + 1), N) + noise[j * N:(j + 1) * N]
        expected = np.column_stack([r * np.sin(t), r * np.cos(t)]).astype(np.float32)
        np.testing.assert_array_equal(X[y == j], expected)
    assert X.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [N] * K)


@pytest.mark.parametrize("name, params, shape_x, n_classes", [
    ("spiral", {"classes": 4, "points_per_class": 7, "noise": 0.1}, (28, 2), 4),
    ("moons", {"points_per_class": 9, "noise": 0.1}, (18, 2), 2),
    ("circles", {"points_per_class": 9, "noise": 0.0, "inner_radius": 0.3}, (18, 2), 2),
    ("xor", {"points_per_class": 9, "noise": 0.0}, (18, 2), 2),
    ("blobs", {"classes": 5, "features": 3, "points_per_class": 4, "spread": 1.0}, (20, 3), 5),
])
def test_classification_generators(name, params, shape_x, n_classes):
    X, y = GENERATORS[name](**params, rng=np.random.default_rng(1))
    X2, _ = GENERATORS[name](**params, rng=np.random.default_rng(1))
    assert X.shape == shape_x and X.dtype == np.float32
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(np.bincount(y), [shape_x[0] // n_classes] * n_classes)


@pytest.mark.parametrize("name, params, shape_x, shape_y", [
    ("sine", {"samples": 50, "noise": 0.0}, (50, 1), (50, 1)),
    ("linear", {"samples": 30, "features": 4, "targets": 2, "noise": 0.0}, (30, 4), (30, 2)),
])
def test_regression_generators(name, params, shape_x, shape_y):
    X, y = GENERATORS[name](**params, rng=np.random.default_rng(2))
    assert X.shape == shape_x and y.shape == shape_y
    assert X.dtype == np.float32 and y.dtype == np.float32


def test_sine_without_noise_is_the_sine():
    X, y = GENERATORS["sine"](samples=20, noise=0.0, rng=np.random.default_rng(3))
    np.testing.assert_allclose(y, np.sin(X), rtol=0, atol=1e-6)


def test_noise_free_geometry():
    X, y = circles(16, 0.0, 0.4, np.random.default_rng(0))
    np.testing.assert_allclose(np.hypot(X[:, 0], X[:, 1]), np.where(y == 0, 1.0, 0.4), atol=1e-6)
    X, y = xor(50, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal((X[:, 0] * X[:, 1] < 0).astype(np.int64), y)
    X, y = moons(10, 0.0, np.random.default_rng(0))
    np.testing.assert_allclose(np.hypot(X[y == 0, 0], X[y == 0, 1]), 1.0, atol=1e-6)


def test_blobs_spread_around_their_centres():
    X, y = blobs(2, 2, 2000, 0.5, np.random.default_rng(4))
    for c in range(2):
        np.testing.assert_allclose(X[y == c].std(axis=0), 0.5, rtol=0.05)
