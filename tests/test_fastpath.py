"""The fast paths (reused buffers, packed parameters, whole-model optimizer steps, the
lean softmax cross-entropy) give the numbers of a plain NumPy reference."""

import tracemalloc
from itertools import pairwise

import numpy as np
import pytest

from nnback.layers import Dropout, Linear, ReLU, Sigmoid, Tanh
from nnback.losses import SoftmaxCrossEntropy
from nnback.model import Sequential
from nnback.optim import BLOCK, SGD, Adam, RMSprop, clip_grad_norm

TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}
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
    """(out, local gradient) of an activation, written out in plain NumPy."""
    if name == "relu":
        out = np.maximum(h, 0)
        return out, (h > 0).astype(h.dtype)
    if name == "tanh":
        out = np.tanh(h)
        return out, 1 - out ** 2
    out = 1 / (1 + np.exp(-h))
    return out, out * (1 - out)


def reference_step(weights, biases, velocity, x, y, lr, momentum, activation, first_step):
    """Forward, softmax cross-entropy, backward and SGD with momentum, all by hand.

    Returns the loss and the gradients; updates weights, biases and velocity in place.
    """
    acts, locals_ = [x], []
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = acts[-1] @ w + b
        if i < len(weights) - 1:
            h, local = reference_activation(activation, h)
            locals_.append(local)
        acts.append(h)
    scores = acts[-1]
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(x)
    loss = -log_probs[np.arange(n), y].mean()
    d = np.exp(log_probs)
    d[np.arange(n), y] -= 1
    d /= n
    grads = []
    for i in range(len(weights) - 1, -1, -1):
        grads.append((acts[i].T @ d, d.sum(axis=0)))
        if i:
            d = (d @ weights[i].T) * locals_[i - 1]
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
    return loss, flat_grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("input_grad", [True, False])
def test_training_steps_match_the_reference(dtype, activation, input_grad):
    model = build(dtype, activation=activation)
    loss_fn = SoftmaxCrossEntropy()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    params = [p.copy() for _, p, _ in model.parameters()]
    weights, biases = params[0::2], params[1::2]
    velocity = [np.zeros_like(p) for p in params]
    rng = np.random.default_rng(1)
    for step in range(5):
        batch = 8 if step < 3 else 5  # a new batch size reallocates the buffers
        x = rng.standard_normal((batch, 6)).astype(dtype)
        y = rng.integers(0, 4, batch)
        scores = model.forward(x)
        loss, dscores = loss_fn(scores, y)
        dx = model.backward(dscores, input_grad=input_grad)
        grads = [g.copy() for _, _, g in model.parameters()]
        opt.step()
        ref_loss, ref_grads = reference_step(weights, biases, velocity, x, y, 0.1, 0.9,
                                             activation, step == 0)
        assert loss == pytest.approx(ref_loss, rel=TOL[dtype]["rtol"])
        assert (dx is None) != input_grad
        for got, want in zip(grads, ref_grads, strict=True):
            np.testing.assert_allclose(got, want, **TOL[dtype])
        for (_, got, _), want in zip(model.parameters(), params, strict=True):
            np.testing.assert_allclose(got, want, **TOL[dtype])
        assert scores.dtype == dscores.dtype == dtype
        assert all(g.dtype == dtype for g in grads)
        assert all(s.dtype == dtype for s in opt.state_dict().values() if s.ndim)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_path_equals_the_traced_path(dtype):
    """A traced pass allocates every array; the numbers are the same bit for bit."""
    x = np.random.default_rng(2).standard_normal((10, 6)).astype(dtype)
    y = np.arange(10) % 4
    results = []
    for trace in (None, []):
        model = build(dtype)
        _, dscores = SoftmaxCrossEntropy()(model.forward(x, trace=trace), y)
        dx = model.backward(dscores, trace=None if trace is None else [])
        results.append([dx] + [g.copy() for _, _, g in model.parameters()])
    for fast, traced in zip(*results, strict=True):
        np.testing.assert_array_equal(fast, traced)


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


def test_identity_layers_at_the_ends_do_not_leak_reused_buffers():
    rng = np.random.default_rng(10)
    model = Sequential([Dropout(0.0), Linear(6, 5, dtype=np.float64, rng=rng), ReLU(),
                        Linear(5, 4, dtype=np.float64, rng=rng), ReLU(), Dropout(0.0)])
    x1, x2 = rng.standard_normal((2, 3, 6))
    out1 = model.forward(x1)
    dx1 = model.backward(np.ones_like(out1))
    kept = out1.copy(), dx1.copy()
    model.backward(np.ones_like(model.forward(x2)) * 2)
    np.testing.assert_array_equal(out1, kept[0])
    np.testing.assert_array_equal(dx1, kept[1])


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


def test_parameters_and_gradients_are_packed_contiguously():
    model = build(np.float32)
    params = [p for _, p, _ in model.parameters()]
    grads = [g for _, _, g in model.parameters()]
    for arrays in (params, grads):
        base = arrays[0].base
        assert base.size == sum(a.size for a in arrays)
        assert all(a.base is base for a in arrays)
    assert not any(np.shares_memory(p, g) for p in params for g in grads)


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
    """Packed parameters take one update for the whole model, bit-identical to one
    update per separately allocated parameter."""
    model = build(dtype, widths)
    loose = [(n, p.copy(), g) for n, p, g in model.parameters()]  # not packed
    packed_opt = OPTIMIZERS[name](model.parameters())
    loose_opt = OPTIMIZERS[name](loose)
    assert packed_opt._flat is not None and loose_opt._flat is None
    assert len(packed_opt._flat) == 1 + (model.num_parameters() > BLOCK)
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
    for _, _, g in model.parameters():
        g.fill(1.0)
    opt.step()
    fresh = SGD(model.parameters(), lr=0.1, momentum=0.9)
    fresh.load_state_dict(opt.state_dict())
    before = [p.copy() for _, p, _ in model.parameters()]
    fresh.step()
    after_fresh = [p.copy() for _, p, _ in model.parameters()]
    for (_, p, _), b in zip(model.parameters(), before, strict=True):
        p[...] = b
    opt.step()
    for (_, p, _), want in zip(model.parameters(), after_fresh, strict=True):
        np.testing.assert_array_equal(p, want)


def test_clip_grad_norm_on_packed_gradients():
    model = build(np.float64)
    rng = np.random.default_rng(7)
    for _, _, g in model.parameters():
        g[...] = rng.standard_normal(g.shape)
    grads = [g for _, _, g in model.parameters()]
    expected = np.sqrt(sum((g ** 2).sum() for g in grads))
    scaled = [g * (1.0 / (expected + 1e-6)) for g in grads]
    assert clip_grad_norm(grads, 1.0) == pytest.approx(expected, rel=1e-12)
    for got, want in zip(grads, scaled, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_matches_the_formula(smoothing, dtype):
    rng = np.random.default_rng(8)
    scores = (rng.standard_normal((6, 5)) * 30).astype(dtype)
    y = rng.integers(0, 5, 6)
    loss, dscores = SoftmaxCrossEntropy(label_smoothing=smoothing)(scores, y)
    wide = scores.astype(np.float64)
    log_probs = wide - wide.max(1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(1, keepdims=True))
    target = np.full((6, 5), smoothing / 5)
    target[np.arange(6), y] += 1 - smoothing
    assert loss == pytest.approx(-(target * log_probs).sum() / 6, rel=TOL[dtype]["rtol"])
    np.testing.assert_allclose(dscores, (np.exp(log_probs) - target) / 6, **TOL[dtype])
    assert dscores.dtype == dtype


@pytest.mark.parametrize("bad", [-1, 5])
def test_softmax_cross_entropy_rejects_labels_out_of_range(bad):
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 5\)"):
        SoftmaxCrossEntropy()(np.zeros((3, 5), np.float32), np.array([0, bad, 1]))


def test_steady_state_step_allocates_no_activation_sized_arrays():
    """After the first step of a batch size, a step allocates only the scores and a few
    (N,) vectors: nothing the size of a hidden activation."""
    model = build(np.float32, widths=(64, 256, 256, 10))
    loss_fn = SoftmaxCrossEntropy()
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = np.random.default_rng(9).standard_normal((128, 64)).astype(np.float32)
    y = np.arange(128) % 10

    def step():
        _, dscores = loss_fn(model.forward(x), y)
        model.backward(dscores, input_grad=False)
        opt.step()

    step()
    tracemalloc.start()
    try:
        for _ in range(3):
            step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    hidden = 128 * 256 * 4
    assert peak < hidden / 2
