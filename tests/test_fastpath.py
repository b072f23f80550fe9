"""The fast paths (packed parameters, whole-model optimizer steps, the fused softmax
cross-entropy, no input gradient in a training step) give the numbers of a plain NumPy
reference, bit for bit."""

from itertools import pairwise

import numpy as np
import pytest

from nnback.layers import Dropout, Linear, ReLU, Sigmoid, Tanh
from nnback.losses import SoftmaxCrossEntropy, softmax_cross_entropy
from nnback.model import Sequential
from nnback.optim import BLOCK, SGD, Adam, RMSprop, clip_grad_norm

ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid}


def build(dtype, widths=(6, 9, 7, 4), activation="relu", seed=0):
    rng = np.random.default_rng(seed)
    layers = []
    for i, (a, b) in enumerate(pairwise(widths)):
        layers.append(Linear(a, b, dtype=dtype, rng=rng))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    return Sequential(layers)


def reference_activation(name, h):
    """(out, a function of dout giving dx) of an activation, in plain NumPy."""
    if name == "relu":
        out = np.maximum(h, 0)
        return out, lambda d: (out > 0) * d
    if name == "tanh":
        out = np.tanh(h)
        return out, lambda d: (1 - out * out) * d
    z = np.exp(-np.abs(h))  # the logistic function without overflow
    out = np.where(h >= 0, 1 / (1 + z), z / (1 + z))
    return out, lambda d: (1 - out) * out * d


def reference_loss(scores, y):
    """Softmax cross-entropy and its gradient, in the order of operations nnback uses."""
    n, c = scores.shape
    rows = np.arange(n)
    shifted = scores - scores.max(axis=1, keepdims=True)
    picked = float(shifted[rows, y].sum())
    probs = np.exp(shifted)
    sums = probs @ np.ones(c, scores.dtype)  # row sums
    loss = (float(np.log(sums).sum()) - picked) / n
    dscores = probs / (sums * n)[:, None]
    dscores[rows, y] -= 1 / n
    return loss, dscores


def reference_step(weights, biases, velocity, x, y, lr, momentum, activation, first_step):
    """Forward, softmax cross-entropy, backward and SGD with momentum, by hand.

    Returns the loss, the gradients (W, b per layer) and dx; updates weights, biases
    and velocity in place.
    """
    acts, backs = [x], []
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = acts[-1] @ w + b
        if i < len(weights) - 1:
            h, back = reference_activation(activation, h)
            backs.append(back)
        acts.append(h)
    loss, d = reference_loss(acts[-1], y)
    grads = []
    for i in range(len(weights) - 1, -1, -1):
        grads.append((acts[i].T @ d, np.ones(len(x), x.dtype) @ d))  # db: a sum over N
        d = d @ weights[i].T
        if i:
            d = backs[i - 1](d)
    grads.reverse()
    params = [p for pair in zip(weights, biases, strict=True) for p in pair]
    flat_grads = [g for pair in grads for g in pair]
    for p, g, v in zip(params, flat_grads, velocity, strict=True):
        if first_step:
            v[...] = g
        else:
            v *= momentum
            v += g
        p -= lr * v
    return loss, flat_grads, d


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("input_grad", [True, False])
def test_training_steps_are_bit_identical_to_the_reference(dtype, activation, input_grad):
    model = build(dtype, activation=activation)
    loss_fn = SoftmaxCrossEntropy()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    params = [p.copy() for _, p, _ in model.parameters()]
    weights, biases = params[0::2], params[1::2]
    velocity = [np.zeros_like(p) for p in params]
    rng = np.random.default_rng(1)
    for step in range(5):
        batch = 8 if step < 3 else 5
        x = rng.standard_normal((batch, 6)).astype(dtype)
        y = rng.integers(0, 4, batch)
        scores = model.forward(x)
        loss, dscores = loss_fn(scores, y)
        dx = model.backward(dscores, input_grad=input_grad)
        grads = [g.copy() for _, _, g in model.parameters()]
        opt.step()
        ref_loss, ref_grads, ref_dx = reference_step(weights, biases, velocity, x, y, 0.1, 0.9,
                                                     activation, step == 0)
        assert loss == ref_loss
        if input_grad:
            np.testing.assert_array_equal(dx, ref_dx)
        else:
            assert dx is None
        for got, want in zip(grads, ref_grads, strict=True):
            np.testing.assert_array_equal(got, want)
        for (_, got, _), want in zip(model.parameters(), params, strict=True):
            np.testing.assert_array_equal(got, want)
        assert scores.dtype == dscores.dtype == dtype
        assert all(g.dtype == dtype for g in grads)
        assert all(s.dtype == dtype for s in opt.state_dict().values() if s.ndim)


@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (5, 2), (64, 3), (7, 10), (3, 200)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_softmax_cross_entropy_matches_its_definition(shape, smoothing, dtype):
    rng = np.random.default_rng(8)
    scores = (rng.standard_normal(shape) * 30).astype(dtype)
    scores[0] += 1e4  # one row far from the others: each row needs its own maximum
    y = rng.integers(0, shape[1], shape[0])
    loss, dscores = SoftmaxCrossEntropy(label_smoothing=smoothing)(scores.copy(), y)
    want_loss, want_dscores = softmax_cross_entropy(scores, y, label_smoothing=smoothing)
    tol = {"rtol": 1e-5, "atol": 1e-7} if dtype == np.float32 else {"rtol": 1e-13, "atol": 1e-16}
    assert loss == pytest.approx(want_loss, rel=tol["rtol"], abs=tol["atol"])
    np.testing.assert_allclose(dscores, want_dscores, **tol)
    assert dscores.dtype == want_dscores.dtype == dtype


def test_softmax_cross_entropy_definition_on_numbers_worked_by_hand():
    loss, dscores = softmax_cross_entropy(np.array([[0.0, 0.0], [0.0, np.log(3.0)]]),
                                          np.array([0, 1]))
    # p = [1/2, 1/2] and [1/4, 3/4]; loss = (log 2 + log 4/3) / 2
    assert loss == pytest.approx((np.log(2) + np.log(4 / 3)) / 2, rel=1e-15)
    np.testing.assert_allclose(dscores, [[-0.25, 0.25], [0.125, -0.125]], rtol=1e-15)


@pytest.mark.parametrize(("dtype", "bad"), [(dtype, bad) for dtype in (np.int8, np.int32, np.int64)
                                             for bad in (-1, 5, 100)]
                         + [(np.uint8, 5), (np.uint64, 2 ** 63 + 5)])
def test_softmax_cross_entropy_rejects_labels_out_of_range(dtype, bad):
    labels = np.array([0, bad, 1], dtype)
    for loss_fn in (SoftmaxCrossEntropy(), softmax_cross_entropy):
        with pytest.raises(ValueError, match=rf"class labels must be in \[0, 5\), got .*{bad}"):
            loss_fn(np.zeros((3, 5), np.float32), labels)


def test_returned_arrays_are_never_overwritten():
    model = build(np.float64)
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal((2, 5, 6))
    out1 = model.forward(x1)
    kept = out1.copy()
    dx1 = model.backward(np.ones_like(out1))
    dx_kept = dx1.copy()
    out2 = model.forward(x2)
    model.backward(out2)
    np.testing.assert_array_equal(out1, kept)
    np.testing.assert_array_equal(dx1, dx_kept)
    assert not np.shares_memory(out1, out2)


def test_trace_arrays_are_distinct_per_layer_and_step():
    model = build(np.float64)
    x = np.random.default_rng(4).standard_normal((3, 6))
    first, second = [], []
    model.forward(x, trace=first)
    model.forward(x, trace=second)
    arrays = first + second
    assert len({id(a) for a in arrays}) == len(arrays)
    assert not any(np.shares_memory(a, b) for a in first for b in second)


def test_input_grad_false_skips_layers_below_the_first_trained_one():
    rng = np.random.default_rng(5)
    model = Sequential([Dropout(0.5, rng=rng), Linear(6, 4, dtype=np.float64, rng=rng)])
    x = rng.standard_normal((7, 6))
    scores = model.forward(x)
    assert model.backward(np.ones_like(scores), input_grad=False) is None
    masked_input = model[1]._saved()
    np.testing.assert_allclose(model[1].grads["W"], masked_input.T @ np.ones_like(scores))
    np.testing.assert_allclose(model[1].grads["b"], np.full(4, 7.0))


def test_a_model_without_parameters_has_no_input_grad_to_skip():
    model = Sequential([ReLU(), Tanh()])
    model.forward(np.ones((2, 3)))
    assert model.backward(np.ones((2, 3)), input_grad=False) is None
    assert model.backward(np.ones((2, 3))).shape == (2, 3)
    assert model.flat_params.size == model.flat_grads.size == 0


def test_parameters_and_gradients_are_views_of_the_packed_arrays():
    model = build(np.float32)
    params = model.parameters()
    assert params.flat_params is model.flat_params and params.flat_grads is model.flat_grads
    np.testing.assert_array_equal(model.flat_params,
                                  np.concatenate([p.ravel() for _, p, _ in params]))
    start = 0
    for _, param, grad in params:
        for array, flat in ((param, model.flat_params), (grad, model.flat_grads)):
            assert array.base is flat
            assert array.__array_interface__["data"][0] == (
                flat.__array_interface__["data"][0] + start * flat.itemsize)
        start += param.size
    assert start == model.flat_params.size == model.num_parameters()
    assert not np.shares_memory(model.flat_params, model.flat_grads)


OPTIMIZERS = {
    "sgd": lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    "nesterov": lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda p: Adam(p, lr=0.01, amsgrad=True),
    "rmsprop": lambda p: RMSprop(p, lr=0.01, momentum=0.5, centered=True),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("widths", [(6, 9, 7, 4), (6, 300, 300, 4)])  # 1 and 2 blocks
def test_whole_model_update_equals_per_parameter_update(name, dtype, widths):
    """The packed parameters of ``model.parameters()`` take one update for the whole
    model, bit-identical to one update per separately allocated parameter."""
    model = build(dtype, widths)
    assert (model.num_parameters() > BLOCK) == (widths[1] == 300)
    loose = [(n, p.copy(), g) for n, p, g in model.parameters()]  # a plain list: not packed
    packed_opt = OPTIMIZERS[name](model.parameters())
    loose_opt = OPTIMIZERS[name](loose)
    state = packed_opt.state_dict().keys() - {"step"}
    packed_state = [arr for buffers in packed_opt.state.values() for arr in buffers.values()]
    assert len({id(arr.base) for arr in packed_state}) == len(state) // len(loose)
    rng = np.random.default_rng(6)
    for _ in range(4):
        for _, _, g in model.parameters():
            g[...] = rng.standard_normal(g.shape)
        packed_opt.step()
        loose_opt.step()
    for (_, a, _), (_, b, _) in zip(model.parameters(), loose, strict=True):
        np.testing.assert_array_equal(a, b)
    packed_state, loose_state = packed_opt.state_dict(), loose_opt.state_dict()
    assert packed_state.keys() == loose_state.keys()
    for key in packed_state:
        np.testing.assert_array_equal(packed_state[key], loose_state[key])


def test_packed_optimizer_state_round_trips():
    model = build(np.float32)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.flat_grads.fill(1.0)
    opt.step()
    fresh = SGD(model.parameters(), lr=0.1, momentum=0.9)
    fresh.load_state_dict(opt.state_dict())
    before = model.flat_params.copy()
    fresh.step()
    after_fresh = model.flat_params.copy()
    model.flat_params[...] = before
    opt.step()
    np.testing.assert_array_equal(model.flat_params, after_fresh)


def test_clip_grad_norm_of_the_packed_gradients_scales_every_parameter():
    model = build(np.float64)
    model.flat_grads[...] = np.random.default_rng(7).standard_normal(model.flat_grads.size)
    grads = [g for _, _, g in model.parameters()]
    expected = np.sqrt(sum((g ** 2).sum() for g in grads))
    scaled = [g * (1.0 / (expected + 1e-6)) for g in grads]
    assert clip_grad_norm([model.flat_grads], 1.0) == pytest.approx(expected, rel=1e-12)
    for got, want in zip(grads, scaled, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
