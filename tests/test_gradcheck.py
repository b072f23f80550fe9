import numpy as np
import pytest

from nnback.gradcheck import check_layer, check_loss, check_model, numerical_gradient, rel_error
from nnback.layers import BatchNorm1d, Dropout, Linear, ReLU
from nnback.losses import MSE, SoftmaxCrossEntropy
from nnback.model import Sequential


class WrongReLU(ReLU):
    """ReLU whose backward forgets the mask: the check must catch it."""

    def backward(self, dout):
        self._saved()
        return dout.copy()


def test_numerical_gradient_of_a_known_function():
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    before = x.copy()
    grad = numerical_gradient(lambda v: v ** 3, x, dout)
    np.testing.assert_allclose(grad, 3 * x ** 2 * dout, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(x, before)
    with pytest.raises(ValueError, match="C-contiguous"):
        numerical_gradient(lambda v: v, x[:, ::2], dout[:, ::2])


def test_rel_error():
    assert rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error([3.0, 0.0], [0.0, 4.0]) == pytest.approx(5 / 4, rel=1e-15)
    assert rel_error([1.0], [1.1]) == pytest.approx(0.1 / 1.1, rel=1e-12)


def test_check_layer_catches_a_wrong_backward():
    rng = np.random.default_rng(1)
    errors = check_layer(WrongReLU(), rng.standard_normal((4, 5)), rng)
    assert errors["x"] > 0.1


def test_check_loss_catches_a_wrong_gradient():
    def halved(scores, y):
        value, dscores = MSE()(scores, y)
        return value, dscores / 2

    rng = np.random.default_rng(2)
    scores, y = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    assert check_loss(halved, scores, y) == pytest.approx(0.5)


def test_check_layer_has_no_side_effects_but_grads():
    rng = np.random.default_rng(3)
    batchnorm = BatchNorm1d(4, dtype=np.float64)
    x = rng.standard_normal((5, 4))
    before = x.copy()
    check_layer(batchnorm, x, rng)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(batchnorm.buffers["running_mean"], 0)
    np.testing.assert_array_equal(batchnorm.buffers["running_var"], 1)
    dropout = Dropout(0.5, rng=np.random.default_rng(4))
    check_layer(dropout, x, rng)
    np.testing.assert_array_equal(dropout.rng.random(3), np.random.default_rng(4).random(3))


def test_dropout_is_checked_with_one_mask():
    rng = np.random.default_rng(5)
    layer = Dropout(0.5, rng=np.random.default_rng(6))
    errors = check_layer(layer, rng.standard_normal((6, 7)), rng)
    assert errors["x"] < 1e-10


def test_check_layer_requires_float64():
    rng = np.random.default_rng(7)
    with pytest.raises(ValueError, match="W is float32"):
        check_layer(Linear(3, 2, rng=rng), rng.standard_normal((2, 3)), rng)
    with pytest.raises(ValueError, match="x is float32"):
        check_layer(ReLU(), np.ones((2, 3), np.float32), rng)


def _bias_before_batchnorm(rng, bias_layer):
    return Sequential([bias_layer, BatchNorm1d(7, dtype=np.float64), ReLU(),
                       Linear(7, 3, dtype=np.float64, rng=rng)])


class OffsetBiasLinear(Linear):
    """Linear whose bias gradient is off by a small constant: a bug the floor must not hide."""

    def backward(self, dout, input_grad=True):
        dx = super().backward(dout, input_grad)
        self.grads["b"] += 1e-4
        return dx


def test_a_bias_with_zero_true_gradient_passes_but_a_small_wrong_one_fails():
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    model = _bias_before_batchnorm(rng, Linear(5, 7, dtype=np.float64, rng=rng))
    errors = check_model(model, SoftmaxCrossEntropy(), x, y)
    assert np.abs(model[0].grads["b"]).max() < 1e-15  # normalisation removes the bias
    assert max(errors.values()) < 1e-7
    wrong = _bias_before_batchnorm(rng, OffsetBiasLinear(5, 7, dtype=np.float64, rng=rng))
    errors = check_model(wrong, SoftmaxCrossEntropy(), x, y)
    assert errors["0.b"] > 1e-3
    assert errors["0.W"] < 1e-7
