import math

import numpy as np
import pytest

from nnback import init
from nnback.gradcheck import check_layer
from nnback.layers import (
    GELU,
    BatchNorm1d,
    Dropout,
    LayerNorm,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    Softplus,
    Tanh,
)

OUT = 4  # output features of the Linear layers under test

FACTORIES = {
    "linear": lambda d, dtype, rng: Linear(d, OUT, dtype=dtype, rng=rng),
    "linear_xavier_nobias": lambda d, dtype, rng: Linear(d, OUT, init="xavier_uniform", bias=False,
                                                         dtype=dtype, rng=rng),
    "relu": lambda d, dtype, rng: ReLU(),
    "leaky_relu": lambda d, dtype, rng: LeakyReLU(0.1),
    "sigmoid": lambda d, dtype, rng: Sigmoid(),
    "tanh": lambda d, dtype, rng: Tanh(),
    "gelu": lambda d, dtype, rng: GELU(),
    "softplus": lambda d, dtype, rng: Softplus(),
    "softplus_beta2": lambda d, dtype, rng: Softplus(beta=2.0, threshold=3.0),
    "dropout": lambda d, dtype, rng: Dropout(0.3, rng=rng),
    "batchnorm": lambda d, dtype, rng: BatchNorm1d(d, dtype=dtype),
    "layernorm": lambda d, dtype, rng: LayerNorm(d, dtype=dtype),
}
NORMS = {"batchnorm", "layernorm"}
SHAPES = [(1, 5), (3, 50), (64, 3), (7, 6)]


def make(name, d, dtype=np.float64, seed=0):
    """Build layer ``name`` for d input features with randomised affine parameters."""
    rng = np.random.default_rng(seed)
    layer = FACTORIES[name](d, dtype, rng)
    if name in NORMS:
        for p in layer.params.values():
            p[...] = rng.standard_normal(p.shape)
    if name == "batchnorm":
        layer.buffers["running_mean"][...] = rng.standard_normal(d)
        layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, d)
    return layer


def gradcheck_cases():
    for name in FACTORIES:
        for shape in SHAPES:
            for training in (True, False):
                if name == "batchnorm" and training and shape[0] == 1:
                    continue  # batch statistics need two samples; tested separately
                if not training and name not in {"batchnorm", "dropout"}:
                    continue  # identical in both modes
                mode = "train" if training else "eval"
                yield pytest.param(name, shape, training, id=f"{name}-{shape[0]}x{shape[1]}-{mode}")


@pytest.mark.parametrize("name,shape,training", list(gradcheck_cases()))
def test_gradient_check(name, shape, training):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape) * 2
    if name == "softplus_beta2":
        x[0, 0] = 5.0  # in the linear region
    errors = check_layer(make(name, shape[1]), x, rng, training=training)
    layer = make(name, shape[1])
    assert set(errors) == {"x", *layer.params}
    tolerance = 1e-6 if name in NORMS else 1e-7
    assert all(err < tolerance for err in errors.values()), errors


@pytest.mark.parametrize("name", FACTORIES)
def test_backward_before_forward_raises(name):
    with pytest.raises(RuntimeError, match="before forward"):
        make(name, 3).backward(np.ones((2, OUT)))


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_contract(name, dtype):
    """Same dtype out, grads keyed like params, dout left untouched, grads overwritten."""
    rng = np.random.default_rng(2)
    layer = make(name, 6, dtype)
    x = rng.standard_normal((5, 6)).astype(dtype)
    out = layer.forward(x)
    assert out.dtype == dtype and out.shape == (5, layer.output_features(6))
    dout = rng.standard_normal(out.shape).astype(dtype)
    saved = dout.copy()
    dout.setflags(write=False)
    dx = layer.backward(dout)
    np.testing.assert_array_equal(dout, saved)
    assert dx.dtype == dtype and dx.shape == x.shape
    assert layer.params.keys() == layer.grads.keys()
    for key, param in layer.params.items():
        assert param.dtype == dtype and layer.grads[key].shape == param.shape
    first = {key: g.copy() for key, g in layer.grads.items()}
    layer.backward(dout)
    for key, grad in layer.grads.items():
        np.testing.assert_array_equal(grad, first[key])


def test_linear_gradient_shapes_follow_the_notes():
    """dW = X.T @ dout and dX = dout @ W.T, each with its variable's shape."""
    rng = np.random.default_rng(3)
    layer = Linear(10, 5, dtype=np.float64, rng=rng)
    x, dout = rng.standard_normal((3, 10)), rng.standard_normal((3, 5))
    layer.forward(x)
    dx = layer.backward(dout)
    assert layer.grads["W"].shape == (10, 5) and dx.shape == (3, 10)
    np.testing.assert_allclose(layer.grads["W"], x.T @ dout, rtol=1e-14)
    np.testing.assert_allclose(dx, dout @ layer.params["W"].T, rtol=1e-14)
    np.testing.assert_allclose(layer.grads["b"], dout.sum(0), rtol=1e-14)


def test_linear_repr_init_and_features():
    layer = Linear(784, 128, rng=np.random.default_rng(0))
    assert repr(layer) == "Linear(784, 128)"
    assert repr(Linear(3, 2, bias=False)) == "Linear(3, 2, bias=False)"
    assert layer.params["W"].dtype == np.float32
    assert not layer.params["b"].any()
    assert layer.output_features(784) == 128
    with pytest.raises(ValueError, match="expects 784"):
        layer.output_features(10)
    with pytest.raises(ValueError, match="^init must be one of he_normal"):
        Linear(3, 2, init="orthogonal")


def test_linear_reset_parameters_is_deterministic():
    a = Linear(6, 4, rng=np.random.default_rng(7))
    b = Linear(6, 4, rng=np.random.default_rng(8))
    b.reset_parameters(np.random.default_rng(7))
    np.testing.assert_array_equal(a.params["W"], b.params["W"])


@pytest.mark.parametrize("name,limit", [("he_uniform", np.sqrt(6 / 400)),
                                        ("xavier_uniform", np.sqrt(6 / 600))])
def test_uniform_initialisers_bound(name, limit):
    w = init.INITIALIZERS[name](400, 200, np.random.default_rng(0), np.float64)
    assert w.shape == (400, 200)
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
    np.testing.assert_allclose(w.std(), limit / np.sqrt(3), rtol=0.01)


@pytest.mark.parametrize("name,std", [("he_normal", np.sqrt(2 / 400)),
                                      ("xavier_normal", np.sqrt(2 / 600))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_initialisers_std(name, std, dtype):
    w = init.INITIALIZERS[name](400, 200, np.random.default_rng(0), dtype)
    assert w.dtype == dtype
    np.testing.assert_allclose(w.std(), std, rtol=0.01)
    assert abs(w.mean()) < 0.01 * std * 10


def test_activation_values():
    x = np.array([[-1000.0, -2.0, 0.0, 1.0, 30.0, 1000.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        sigmoid = Sigmoid().forward(x)
        np.testing.assert_array_equal(ReLU().forward(x), [[0, 0, 0, 1, 30, 1000]])
        np.testing.assert_allclose(LeakyReLU(0.1).forward(x), [[-100, -0.2, 0, 1, 30, 1000]])
        softplus = Softplus().forward(x)
    np.testing.assert_allclose(sigmoid[0, 1:5], 1 / (1 + np.exp(-x[0, 1:5])), rtol=1e-15)
    assert sigmoid[0, 0] == 0.0 and sigmoid[0, 5] == 1.0
    np.testing.assert_allclose(softplus[0, :4], np.log1p(np.exp(x[0, :4])), rtol=1e-15)
    assert softplus[0, 4] == 30.0 and softplus[0, 5] == 1000.0
    k = math.sqrt(2 / math.pi)
    gelu = [0.5 * v * (1 + math.tanh(k * (v + 0.044715 * v**3))) for v in x[0, 1:5]]
    np.testing.assert_allclose(GELU().forward(x)[0, 1:5], gelu, rtol=1e-15)
    assert abs(GELU().forward(np.array([1.0]))[0] - 0.841192) < 1e-6  # torch, approximate="tanh"


def test_dropout_masks():
    x = np.ones((200, 50), np.float32)
    layer = Dropout(0.25, rng=np.random.default_rng(0))
    assert layer.forward(x, training=False) is x
    out = layer.forward(x)
    assert out.dtype == np.float32
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
    assert abs((out == 0).mean() - 0.25) < 0.01
    np.testing.assert_array_equal(layer.backward(x), out)
    again = Dropout(0.25, rng=np.random.default_rng(0)).forward(x)
    np.testing.assert_array_equal(again, out)
    assert repr(layer) == "Dropout(p=0.25)"
    with pytest.raises(ValueError, match="^p must be less than 1"):
        Dropout(1.0)


def test_batchnorm_running_statistics_as_pytorch():
    rng = np.random.default_rng(4)
    layer = BatchNorm1d(3, dtype=np.float64)
    x = rng.standard_normal((8, 3)) * 3 + 1
    out = layer.forward(x)
    np.testing.assert_allclose(out, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_mean"], 0.1 * x.mean(0), rtol=1e-12)
    unbiased = x.var(0, ddof=1)
    np.testing.assert_allclose(layer.buffers["running_var"], 0.9 + 0.1 * unbiased, rtol=1e-12)
    evaluated = layer.forward(x, training=False)
    expected = (x - layer.buffers["running_mean"]) / np.sqrt(layer.buffers["running_var"] + 1e-5)
    np.testing.assert_allclose(evaluated, expected, rtol=1e-12)
    assert repr(layer) == "BatchNorm1d(3, eps=1e-05, momentum=0.1)"
    with pytest.raises(ValueError, match="more than 1 sample"):
        layer.forward(x[:1])
    with pytest.raises(ValueError, match="expects 3"):
        layer.output_features(4)


def test_layernorm_normalises_each_sample():
    x = np.random.default_rng(5).standard_normal((4, 10)) * 5 + 2
    out = LayerNorm(10, dtype=np.float64).forward(x)
    np.testing.assert_allclose(out.mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(1), 1, rtol=1e-5)
    assert repr(LayerNorm(10)) == "LayerNorm(10, eps=1e-05)"
