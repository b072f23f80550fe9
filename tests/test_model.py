import numpy as np
import pytest

from nnback.gradcheck import check_model
from nnback.layers import GELU, BatchNorm1d, Dropout, LayerNorm, Linear, ReLU, Tanh
from nnback.losses import MSE, SoftmaxCrossEntropy
from nnback.model import Sequential


def mlp(seed, dtype=np.float32, d_in=10, hidden=32, classes=3):
    rng = np.random.default_rng(seed)
    return Sequential([
        Linear(d_in, hidden, dtype=dtype, rng=rng), ReLU(),
        Linear(hidden, hidden, dtype=dtype, rng=rng), ReLU(),
        Linear(hidden, classes, dtype=dtype, rng=rng),
    ])


def mixed(seed, dtype=np.float64):
    """Every kind of layer with state: BatchNorm buffers, Dropout masks, LayerNorm."""
    rng = np.random.default_rng(seed)
    return Sequential([
        Linear(5, 8, bias=False, dtype=dtype, rng=rng), BatchNorm1d(8, dtype=dtype), GELU(),
        Dropout(0.2, rng=rng), Linear(8, 6, init="xavier_normal", dtype=dtype, rng=rng),
        LayerNorm(6, dtype=dtype), Tanh(), Linear(6, 3, dtype=dtype, rng=rng),
    ])


def sgd_step(model, lr):
    for _, param, grad in model.parameters():
        param -= lr * grad


def test_names_count_and_repr():
    model = mixed(0)
    names = [name for name, _, _ in model.parameters()]
    assert names == ["0.W", "1.gamma", "1.beta", "4.W", "4.b", "5.gamma", "5.beta", "7.W", "7.b"]
    assert [name for name, _ in model.buffers()] == ["1.running_mean", "1.running_var"]
    assert model.num_parameters() == 5 * 8 + 16 + 8 * 6 + 6 + 12 + 6 * 3 + 3
    assert len(model) == 8 and isinstance(model[3], Dropout) and list(model)[0] is model[0]
    assert repr(model).splitlines()[:3] == ["Sequential(", "  (0): Linear(5, 8, bias=False)",
                                            "  (1): BatchNorm1d(8, eps=1e-05, momentum=0.1)"]
    assert model.dtype == np.float64 and Sequential([ReLU()]).dtype == np.float32


def test_mixed_dtypes_rejected():
    with pytest.raises(ValueError, match="one dtype"):
        Sequential([Linear(2, 2, dtype=np.float32), Linear(2, 2, dtype=np.float64)])


def test_forward_casts_input_to_model_dtype():
    out = mlp(0).forward(np.ones((2, 10), np.float64))
    assert out.dtype == np.float32 and out.shape == (2, 3)


@pytest.mark.parametrize("training", [True, False])
def test_gradient_check_through_every_layer(training):
    rng = np.random.default_rng(1)
    model = mixed(1)
    model.forward(rng.standard_normal((16, 5)))  # non-trivial running statistics
    x = rng.standard_normal((6, 5))
    errors = check_model(model, SoftmaxCrossEntropy(), x, rng.integers(0, 3, 6), training=training)
    assert set(errors) == {"x", *(name for name, _, _ in model.parameters())}
    assert all(err < 1e-6 for err in errors.values()), errors


def test_gradient_check_regression_mlp():
    rng = np.random.default_rng(2)
    model = mlp(2, np.float64, d_in=4, hidden=7, classes=2)
    errors = check_model(model, MSE(), rng.standard_normal((5, 4)), rng.standard_normal((5, 2)))
    assert all(err < 1e-7 for err in errors.values()), errors


def test_train_eval_modes():
    model = mixed(3)
    x = np.random.default_rng(3).standard_normal((4, 5))
    assert model.eval() is model and not model.training
    np.testing.assert_array_equal(model.forward(x), model.forward(x))
    model.train()
    assert model.training
    assert not np.array_equal(model.forward(x), model.forward(x))  # fresh dropout masks


def test_state_dict_round_trip():
    source, target = mixed(4), mixed(5)
    source.forward(np.random.default_rng(4).standard_normal((8, 5)))  # move running statistics
    state = source.state_dict()
    names = {name for name, _, _ in source.parameters()} | {"1.running_mean", "1.running_var"}
    assert set(state) == names
    target.load_state_dict(state)
    x = np.random.default_rng(5).standard_normal((3, 5))
    np.testing.assert_array_equal(source.eval().forward(x), target.eval().forward(x))
    state["0.W"][...] = 0  # a copy, not a view
    assert source[0].params["W"].any()


def test_load_state_dict_names_every_problem_and_copies_nothing():
    model = mixed(6)
    state = model.state_dict()
    del state["4.b"]
    state["9.W"] = np.zeros(3)
    state["4.W"] = np.zeros((6, 8))
    before = model[7].params["W"].copy()
    state["7.W"] = np.zeros_like(before)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert "missing keys: 4.b" in message and "unexpected keys: 9.W" in message
    assert "shape mismatch for 4.W: state has (6, 8), model has (8, 6)" in message
    np.testing.assert_array_equal(model[7].params["W"], before)


def train(model, x, y, steps, lr):
    loss = SoftmaxCrossEntropy()
    for _ in range(steps):
        value, dscores = loss(model.forward(x), y)
        model.backward(dscores)
        sgd_step(model, lr)
    return value


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mlp_overfits_twenty_samples(dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((20, 10)).astype(dtype)
    y = rng.integers(0, 3, 20)
    model = mlp(7, dtype)
    assert train(model, x, y, 1, 0.0) == pytest.approx(np.log(3), abs=1.0)
    train(model, x, y, 500, 0.5)
    final, _ = SoftmaxCrossEntropy()(model.forward(x), y)
    assert final < 1e-3
    assert all(param.dtype == dtype for _, param, _ in model.parameters())


def test_same_seed_gives_bit_identical_parameters():
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((16, 5)).astype(np.float32), rng.integers(0, 3, 16)
    runs = []
    for _ in range(2):
        model = mixed(9, np.float32)
        train(model, x, y, 25, 0.05)
        runs.append(model.state_dict())
    assert runs[0].keys() == runs[1].keys()
    for name in runs[0]:
        np.testing.assert_array_equal(runs[0][name], runs[1][name])
