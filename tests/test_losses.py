import math

import numpy as np
import pytest

from nnback.gradcheck import check_loss
from nnback.losses import MSE, BCEWithLogits, Hinge, SoftmaxCrossEntropy

SHAPES = [(1, 4), (3, 50), (64, 3), (7, 5)]


def targets(loss, shape, rng):
    """Labels (classification) or values (regression, binary) for scores of ``shape``."""
    if loss.spec.task == "classification":
        return rng.integers(0, shape[1], shape[0])
    if loss.spec.task == "binary":
        return rng.integers(0, 2, shape).astype(np.float64)
    return rng.standard_normal(shape)


LOSSES = {
    "cross_entropy": SoftmaxCrossEntropy(),
    "cross_entropy_smoothed": SoftmaxCrossEntropy(label_smoothing=0.2),
    "mse": MSE(),
    "hinge": Hinge(),
    "hinge_margin2": Hinge(margin=2.0),
    "bce": BCEWithLogits(),
}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", LOSSES)
def test_gradient_check(name, shape):
    rng = np.random.default_rng(0)
    loss = LOSSES[name]
    scores = rng.standard_normal(shape) * 3
    assert check_loss(loss, scores, targets(loss, shape, rng)) < 1e-7


@pytest.mark.parametrize("loss", [MSE(), BCEWithLogits()])
def test_gradient_check_one_dimensional_targets(loss):
    rng = np.random.default_rng(1)
    scores = rng.standard_normal(6)
    assert check_loss(loss, scores, targets(loss, (6,), rng)) < 1e-7


@pytest.mark.parametrize("name", LOSSES)
def test_float32_scores_give_float32_gradient(name):
    rng = np.random.default_rng(2)
    loss = LOSSES[name]
    scores = rng.standard_normal((5, 3)).astype(np.float32)
    value, dscores = loss(scores, targets(loss, (5, 3), rng))
    assert isinstance(value, float) and dscores.dtype == np.float32 and dscores.shape == (5, 3)


def test_tasks():
    assert SoftmaxCrossEntropy.spec.task == Hinge.spec.task == "classification"
    assert MSE.spec.task == "regression" and BCEWithLogits.spec.task == "binary"


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_stable_at_large_logits(smoothing):
    scores = np.array([[1e4, -1e4, 0.0], [0.0, 1e4, 1e4]], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, dscores = SoftmaxCrossEntropy(smoothing)(scores, np.array([1, 2]))
    assert np.isfinite(value) and np.isfinite(dscores).all()
    if smoothing == 0:
        np.testing.assert_allclose(value, (2e4 + math.log(2)) / 2, rtol=1e-6)
        np.testing.assert_allclose(dscores, [[0.5, -0.5, 0], [0, 0.25, -0.25]], atol=1e-7)


def test_cross_entropy_at_small_init_is_near_log_classes():
    rng = np.random.default_rng(3)
    scores, y = rng.standard_normal((500, 10)) * 1e-3, rng.integers(0, 10, 500)
    value, _ = SoftmaxCrossEntropy()(scores, y)
    assert abs(value - math.log(10)) < 1e-3


def test_label_smoothing_against_hand_formula():
    scores = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    y = np.array([0, 2])
    e, c = 0.1, 3
    expected = 0.0
    for row, label in zip(scores, y, strict=True):
        log_p = row - math.log(sum(math.exp(s) for s in row))
        target = [(1 - e) * (j == label) + e / c for j in range(c)]
        expected -= sum(q * lp for q, lp in zip(target, log_p, strict=True)) / 2
    value, dscores = SoftmaxCrossEntropy(label_smoothing=e)(scores, y)
    assert value == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(dscores.sum(axis=1), 0, atol=1e-15)
    with pytest.raises(ValueError, match="label_smoothing"):
        SoftmaxCrossEntropy(label_smoothing=1.5)


def test_mse_is_mean_over_all_elements():
    scores = np.array([[1.0, 2.0], [3.0, 4.0], [0.0, -1.0]])
    y = np.array([[0.0, 2.0], [1.0, 1.0], [0.0, 0.0]])
    value, dscores = MSE()(scores, y)
    assert value == pytest.approx((1 + 0 + 4 + 9 + 0 + 1) / 6, rel=1e-15)
    np.testing.assert_allclose(dscores, 2 * (scores - y) / 6, rtol=1e-15)
    column, _ = MSE()(scores[:, :1], y[:, 0])
    assert column == pytest.approx((1 + 4 + 0) / 3, rel=1e-15)
    with pytest.raises(ValueError, match="do not match"):
        MSE()(scores, y[:, 0])


def test_hinge_cs231n_example():
    scores = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    y = np.array([0, 1, 2])
    value, dscores = Hinge()(scores, y)
    assert value == pytest.approx((2.9 + 0 + 12.9) / 3, rel=1e-14)
    assert round(value, 2) == 5.27
    np.testing.assert_allclose(dscores * 3, [[-1, 1, 0], [0, 0, 0], [1, 1, -2]])
    per_sample = [Hinge()(scores[i:i + 1], y[i:i + 1])[0] for i in range(3)]
    np.testing.assert_allclose(per_sample, [2.9, 0.0, 12.9], rtol=1e-14)


def test_bce_with_logits_values_and_stability():
    scores = np.array([-1e4, -2.0, 0.0, 3.0, 1e4])
    y = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, dscores = BCEWithLogits()(scores, y)
    p = 1 / (1 + np.exp(-scores[1:4]))
    middle = -(y[1:4] * np.log(p) + (1 - y[1:4]) * np.log(1 - p))
    assert value == pytest.approx((1e4 + middle.sum() + 1e4) / 5, rel=1e-14)
    np.testing.assert_allclose(dscores, np.r_[-1, p - y[1:4], 1] / 5, rtol=1e-14)


@pytest.mark.parametrize("loss", [SoftmaxCrossEntropy(), Hinge()])
def test_labels_must_be_integers_of_batch_shape(loss):
    scores = np.zeros((4, 3))
    with pytest.raises(ValueError, match="integer class labels"):
        loss(scores, np.zeros(4))
    with pytest.raises(ValueError, match="integer class labels"):
        loss(scores, np.zeros((4, 1), int))
