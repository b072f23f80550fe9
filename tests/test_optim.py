"""Optimizers against hand-computed steps, validation, state round trips, in-place updates."""

import math
import re
import tracemalloc

import numpy as np
import pytest

from nnback.optim import SGD, Adam, AdamW, RMSprop, clip_grad_norm, grad_norm

# A fixed gradient sequence for a 2-element parameter starting at P0.
P0 = np.array([1.0, -2.0])
G1 = np.array([0.5, 1.0])
G2 = np.array([-1.0, 0.5])
G3 = np.array([0.25, -0.5])
EPS = 1e-8


def three_steps(cls, **hyper):
    """Parameter after each of three steps on G1, G2, G3 (float64), shape (3, 2)."""
    param, grad = P0.copy(), np.zeros(2)
    opt = cls([("w", param, grad)], **hyper)
    out = []
    for g in (G1, G2, G3):
        grad[...] = g
        opt.step()
        out.append(param.copy())
    return np.array(out)


def assert_steps(actual, expected):
    np.testing.assert_allclose(actual, np.array(expected), rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------- SGD


def test_sgd_plain():
    # p <- p - 0.1 g
    expected = [
        [1.0 - 0.05, -2.0 - 0.1],      # [0.95, -2.1]
        [0.95 + 0.1, -2.1 - 0.05],     # [1.05, -2.15]
        [1.05 - 0.025, -2.15 + 0.05],  # [1.025, -2.1]
    ]
    assert_steps(three_steps(SGD, lr=0.1), expected)


def test_sgd_momentum_dampening_weight_decay():
    # d = g + 0.1 p;  b1 = d (no dampening on the first step);  b = 0.9 b + 0.5 d;  p -= 0.1 b
    # step 1: d = [0.5 + 0.1, 1.0 - 0.2] = [0.6, 0.8]; b = [0.6, 0.8]
    #         p = [1 - 0.06, -2 - 0.08] = [0.94, -2.08]
    # step 2: d = [-1 + 0.094, 0.5 - 0.208] = [-0.906, 0.292]
    #         b = [0.54 - 0.453, 0.72 + 0.146] = [0.087, 0.866]
    #         p = [0.94 - 0.0087, -2.08 - 0.0866] = [0.9313, -2.1666]
    # step 3: d = [0.25 + 0.09313, -0.5 - 0.21666] = [0.34313, -0.71666]
    #         b = [0.0783 + 0.171565, 0.7794 - 0.35833] = [0.249865, 0.42107]
    #         p = [0.9313 - 0.0249865, -2.1666 - 0.042107] = [0.9063135, -2.208707]
    expected = [[0.94, -2.08], [0.9313, -2.1666], [0.9063135, -2.208707]]
    actual = three_steps(SGD, lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1)
    assert_steps(actual, expected)


def test_sgd_nesterov():
    # b1 = g;  b = 0.9 b + g;  d = g + 0.9 b;  p -= 0.1 d
    # step 1: b = [0.5, 1.0]; d = [0.95, 1.9]; p = [0.905, -2.19]
    # step 2: b = [0.45 - 1, 0.9 + 0.5] = [-0.55, 1.4]; d = [-1 - 0.495, 0.5 + 1.26]
    #         = [-1.495, 1.76]; p = [0.905 + 0.1495, -2.19 - 0.176] = [1.0545, -2.366]
    # step 3: b = [-0.495 + 0.25, 1.26 - 0.5] = [-0.245, 0.76]; d = [0.25 - 0.2205,
    #         -0.5 + 0.684] = [0.0295, 0.184]; p = [1.0545 - 0.00295, -2.366 - 0.0184]
    expected = [[0.905, -2.19], [1.0545, -2.366], [1.05155, -2.3844]]
    assert_steps(three_steps(SGD, lr=0.1, momentum=0.9, nesterov=True), expected)


# ----------------------------------------------------------------------------- Adam
# betas (0.5, 0.75): bias corrections 1 - 0.5**t = 0.5, 0.75, 0.875 and
# 1 - 0.75**t = 0.25, 0.4375, 0.578125.
# Moments of the raw gradient sequence (no weight decay):
#   m = 0.5 m + 0.5 g:    m1 = [0.25, 0.5],     m2 = [-0.375, 0.5],  m3 = [-0.0625, 0.0]
#   v = 0.75 v + 0.25 g²: v1 = [0.0625, 0.25],  v2 = [0.296875, 0.25],
#                         v3 = [0.23828125, 0.25]
M1, M2, M3 = np.array([0.25, 0.5]), np.array([-0.375, 0.5]), np.array([-0.0625, 0.0])
V1, V2, V3 = np.array([0.0625, 0.25]), np.array([0.296875, 0.25]), np.array([0.23828125, 0.25])


def adam_increment(m, v, bc1, bc2, lr=0.1):
    """lr * (m / bc1) / (sqrt(v / bc2) + eps), the documented Adam update."""
    return lr * (m / bc1) / (np.sqrt(v / bc2) + EPS)


# the plain Adam step's increments p_{t-1} - p_t, lr 0.1
U1 = adam_increment(M1, V1, 0.5, 0.25)
U2 = adam_increment(M2, V2, 0.75, 0.4375)
U3 = adam_increment(M3, V3, 0.875, 0.578125)


def test_adam_plain():
    expected = [P0 - U1, P0 - U1 - U2, P0 - U1 - U2 - U3]
    assert_steps(three_steps(Adam, lr=0.1, betas=(0.5, 0.75), eps=EPS), expected)
    # step 1 moves each entry by lr * sign(g): m̂ = g and sqrt(v̂) = |g|
    np.testing.assert_allclose(U1, [0.1, 0.1], rtol=1e-7)


def test_adam_amsgrad_uses_running_max_of_v():
    # v3[0] = 0.23828125 < v2[0] = 0.296875, so step 3 uses v_max = [0.296875, 0.25].
    vmax3 = np.array([0.296875, 0.25])
    u3 = adam_increment(M3, vmax3, 0.875, 0.578125)
    expected = [P0 - U1, P0 - U1 - U2, P0 - U1 - U2 - u3]
    actual = three_steps(Adam, lr=0.1, betas=(0.5, 0.75), eps=EPS, amsgrad=True)
    assert_steps(actual, expected)
    assert not np.allclose(actual[2], P0 - U1 - U2 - U3)


def test_adam_l2_weight_decay():
    # weight decay 0.1 enters the gradient: d = g + 0.1 p, and the moments follow d.
    d1 = G1 + 0.1 * P0                      # [0.6, 0.8]
    m1, v1 = 0.5 * d1, 0.25 * d1**2
    p1 = P0 - adam_increment(m1, v1, 0.5, 0.25)
    d2 = G2 + 0.1 * p1
    m2, v2 = 0.5 * m1 + 0.5 * d2, 0.75 * v1 + 0.25 * d2**2
    p2 = p1 - adam_increment(m2, v2, 0.75, 0.4375)
    d3 = G3 + 0.1 * p2
    m3, v3 = 0.5 * m2 + 0.5 * d3, 0.75 * v2 + 0.25 * d3**2
    p3 = p2 - adam_increment(m3, v3, 0.875, 0.578125)
    actual = three_steps(Adam, lr=0.1, betas=(0.5, 0.75), eps=EPS, weight_decay=0.1)
    assert_steps(actual, [p1, p2, p3])


def test_adamw_decays_before_the_adam_step():
    # p <- p (1 - 0.1 * 0.5) = 0.95 p, then the plain Adam step (moments ignore the decay).
    p1 = 0.95 * P0 - U1
    p2 = 0.95 * p1 - U2
    p3 = 0.95 * p2 - U3
    actual = three_steps(AdamW, lr=0.1, betas=(0.5, 0.75), eps=EPS, weight_decay=0.5)
    assert_steps(actual, [p1, p2, p3])


def test_adamw_default_weight_decay_is_torch_default():
    opt = AdamW([("w", P0.copy(), np.zeros(2))])
    assert (opt.lr, opt.betas, opt.eps, opt.weight_decay, opt.amsgrad) == (
        1e-3, (0.9, 0.999), 1e-8, 1e-2, False)


# -------------------------------------------------------------------------- RMSprop
# alpha 0.5: v = 0.5 v + 0.5 g²: v1 = [0.125, 0.5], v2 = [0.5625, 0.375],
#                                v3 = [0.3125, 0.3125]
SQ1, SQ2, SQ3 = np.array([0.125, 0.5]), np.array([0.5625, 0.375]), np.array([0.3125, 0.3125])


def test_rmsprop_plain():
    p1 = P0 - 0.1 * G1 / (np.sqrt(SQ1) + EPS)
    p2 = p1 - 0.1 * G2 / (np.sqrt(SQ2) + EPS)
    p3 = p2 - 0.1 * G3 / (np.sqrt(SQ3) + EPS)
    assert_steps(three_steps(RMSprop, lr=0.1, alpha=0.5, eps=EPS), [p1, p2, p3])


def test_rmsprop_centered_with_momentum():
    # g_avg = 0.5 g_avg + 0.5 g: [0.25, 0.5], [-0.375, 0.5], [-0.0625, 0.0]
    # v~ = v - g_avg²: [0.125 - 0.0625, 0.5 - 0.25] = [0.0625, 0.25],
    #      [0.5625 - 0.140625, 0.375 - 0.25] = [0.421875, 0.125],
    #      [0.3125 - 0.00390625, 0.3125 - 0] = [0.30859375, 0.3125]
    # b = 0.9 b + g / (sqrt(v~) + eps);  p -= 0.1 b
    b1 = G1 / (np.sqrt([0.0625, 0.25]) + EPS)          # ~[2, 2]
    b2 = 0.9 * b1 + G2 / (np.sqrt([0.421875, 0.125]) + EPS)
    b3 = 0.9 * b2 + G3 / (np.sqrt([0.30859375, 0.3125]) + EPS)
    expected = [P0 - 0.1 * b1, P0 - 0.1 * (b1 + b2), P0 - 0.1 * (b1 + b2 + b3)]
    actual = three_steps(RMSprop, lr=0.1, alpha=0.5, eps=EPS, momentum=0.9, centered=True)
    assert_steps(actual, expected)
    np.testing.assert_allclose(actual[0], [0.8, -2.2], rtol=1e-7)


def test_rmsprop_weight_decay():
    d1 = G1 + 0.2 * P0                      # [0.7, 0.6]
    v1 = 0.5 * d1**2
    p1 = P0 - 0.1 * d1 / (np.sqrt(v1) + EPS)
    d2 = G2 + 0.2 * p1
    v2 = 0.5 * v1 + 0.5 * d2**2
    p2 = p1 - 0.1 * d2 / (np.sqrt(v2) + EPS)
    d3 = G3 + 0.2 * p2
    v3 = 0.5 * v2 + 0.5 * d3**2
    p3 = p2 - 0.1 * d3 / (np.sqrt(v3) + EPS)
    actual = three_steps(RMSprop, lr=0.1, alpha=0.5, eps=EPS, weight_decay=0.2)
    assert_steps(actual, [p1, p2, p3])


# ----------------------------------------------------------------- construction errors


@pytest.mark.parametrize("cls, hyper, name", [
    (SGD, {"lr": -0.1}, "lr"),
    (SGD, {"lr": float("nan")}, "lr"),
    (SGD, {"momentum": -0.5}, "momentum"),
    (SGD, {"dampening": -1.0}, "dampening"),
    (SGD, {"weight_decay": -1e-4}, "weight_decay"),
    (Adam, {"betas": (1.0, 0.999)}, "betas[0]"),
    (Adam, {"betas": (0.9, -0.1)}, "betas[1]"),
    (Adam, {"betas": (0.9,)}, "betas"),
    (Adam, {"eps": -1e-8}, "eps"),
    (Adam, {"weight_decay": -0.1}, "weight_decay"),
    (AdamW, {"weight_decay": -0.1}, "weight_decay"),
    (AdamW, {"lr": -1.0}, "lr"),
    (RMSprop, {"alpha": 1.5}, "alpha"),
    (RMSprop, {"eps": -1.0}, "eps"),
    (RMSprop, {"momentum": -0.9}, "momentum"),
    (RMSprop, {"weight_decay": -0.9}, "weight_decay"),
])
def test_invalid_hyperparameter_is_named(cls, hyper, name):
    with pytest.raises(ValueError, match="^" + re.escape(name) + " must be"):
        cls([("w", P0.copy(), np.zeros(2))], **hyper)


@pytest.mark.parametrize("params, fragment", [
    ([], "params"),
    ([("w", np.zeros(2), np.zeros(2)), ("w", np.zeros(2), np.zeros(2))], "'w' appears twice"),
    ([("w", np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64))], "floating-point"),
    ([("w", np.zeros(2), np.zeros(3))], "gradient of 'w'"),
    ([("w", np.zeros(2), np.zeros(2, dtype=np.float32))], "gradient of 'w'"),
])
def test_invalid_params(params, fragment):
    with pytest.raises(ValueError, match=fragment):
        SGD(params, lr=0.1)


def test_params_iterator_is_materialised():
    param, grad = P0.copy(), G1.copy()
    opt = SGD(iter([("w", param, grad)]), lr=0.1)
    opt.step()
    opt.step()
    np.testing.assert_allclose(param, [0.9, -2.2], rtol=1e-15)


# ------------------------------------------------------ state dict, in place, dtype

CONFIGS = [
    (SGD, {"lr": 0.05}),
    (SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-3}),
    (SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    (Adam, {"lr": 1e-2, "weight_decay": 1e-3}),
    (Adam, {"lr": 1e-2, "amsgrad": True}),
    (AdamW, {"lr": 1e-2}),
    (AdamW, {"lr": 1e-2, "amsgrad": True}),
    (RMSprop, {"lr": 1e-3, "weight_decay": 1e-3}),
    (RMSprop, {"lr": 1e-3, "momentum": 0.9, "centered": True}),
]
CONFIG_IDS = [f"{cls.__name__}-{'-'.join(hyper)}" for cls, hyper in CONFIGS]


def make_model(dtype=np.float32):
    """Two named parameters (as a model yields them) and a seeded gradient stream."""
    rng = np.random.default_rng(0)
    params = [("0.W", rng.standard_normal((4, 3)).astype(dtype), np.zeros((4, 3), dtype)),
              ("0.b", rng.standard_normal(3).astype(dtype), np.zeros(3, dtype))]
    return params, np.random.default_rng(1)


def train(opt, params, grad_rng, n_steps):
    """Fill the gradients from ``grad_rng`` (as backward would) and step ``n_steps`` times."""
    for _ in range(n_steps):
        for _, param, grad in params:
            grad[...] = grad_rng.standard_normal(param.shape) + param
        opt.step()


@pytest.mark.parametrize("cls, hyper", CONFIGS, ids=CONFIG_IDS)
def test_resume_from_state_dict_is_bit_identical(cls, hyper, tmp_path):
    params, grad_rng = make_model()
    opt = cls(params, **hyper)
    train(opt, params, grad_rng, 5)

    params2, grad_rng2 = make_model()
    first = cls(params2, **hyper)
    train(first, params2, grad_rng2, 3)
    np.savez(tmp_path / "optim.npz", **first.state_dict())
    with np.load(tmp_path / "optim.npz", allow_pickle=False) as saved:
        state = dict(saved)
    resumed = cls(params2, **hyper)
    resumed.load_state_dict(state)
    assert resumed.step_count == 3
    train(resumed, params2, grad_rng2, 2)

    for (name, p, _), (_, p2, _) in zip(params, params2, strict=True):
        assert np.array_equal(p, p2), name
    final, final2 = opt.state_dict(), resumed.state_dict()
    assert final.keys() == final2.keys()
    for key in final:
        assert np.array_equal(final[key], final2[key]), key


@pytest.mark.parametrize("cls, hyper, keys", [
    (SGD, {"momentum": 0.9}, {"step", "w/momentum_buffer"}),
    (SGD, {}, {"step"}),
    (Adam, {"amsgrad": True}, {"step", "w/exp_avg", "w/exp_avg_sq", "w/max_exp_avg_sq"}),
    (RMSprop, {"momentum": 0.5, "centered": True},
     {"step", "w/square_avg", "w/momentum_buffer", "w/grad_avg"}),
])
def test_state_dict_keys(cls, hyper, keys):
    opt = cls([("w", P0.copy(), G1.copy())], **hyper)
    opt.step()
    state = opt.state_dict()
    assert set(state) == keys
    assert state["step"].dtype == np.int64 and state["step"].shape == () and state["step"] == 1


def test_state_dict_is_a_copy():
    opt = Adam([("w", P0.copy(), G1.copy())])
    opt.step()
    state = opt.state_dict()
    before = state["w/exp_avg"].copy()
    opt.step()
    assert np.array_equal(state["w/exp_avg"], before)


def test_load_state_dict_errors_name_the_key():
    opt = Adam([("w", P0.copy(), G1.copy())])
    state = opt.state_dict()
    missing = {k: v for k, v in state.items() if k != "w/exp_avg"}
    with pytest.raises(KeyError, match="w/exp_avg"):
        opt.load_state_dict(missing)
    with pytest.raises(KeyError, match="x/exp_avg"):
        opt.load_state_dict({**state, "x/exp_avg": np.zeros(2)})
    with pytest.raises(ValueError, match="'w/exp_avg_sq' has shape"):
        opt.load_state_dict({**state, "w/exp_avg_sq": np.zeros(3)})
    with pytest.raises(ValueError, match="'step'"):
        opt.load_state_dict({**state, "step": np.array(1.5)})


def test_failed_load_leaves_state_untouched():
    opt = Adam([("w", P0.copy(), G1.copy())])
    opt.step()
    before = opt.state_dict()
    bad = {k: np.full_like(v, 7) for k, v in before.items()}
    bad["w/exp_avg_sq"] = np.zeros(5)
    with pytest.raises(ValueError):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, hyper", CONFIGS, ids=CONFIG_IDS)
def test_step_updates_in_place_and_keeps_dtype(cls, hyper, dtype):
    params, grad_rng = make_model(dtype)
    ids = [(id(p), id(g)) for _, p, g in params]
    opt = cls(params, **hyper)
    buffer_ids = {key: id(arr) for name, bufs in opt.state.items() for key, arr in bufs.items()}
    start = [p.copy() for _, p, _ in params]
    train(opt, params, grad_rng, 3)
    grads_before = [g.copy() for _, _, g in params]
    opt.step()
    assert [(id(p), id(g)) for _, p, g in params] == ids
    assert buffer_ids == {key: id(arr) for bufs in opt.state.values() for key, arr in bufs.items()}
    assert all(p.dtype == dtype for _, p, _ in params)
    assert all(arr.dtype == dtype for bufs in opt.state.values() for arr in bufs.values())
    assert all(np.array_equal(g, g0) for (_, _, g), g0 in zip(params, grads_before, strict=True))
    assert not any(np.array_equal(p, p0) for (_, p, _), p0 in zip(params, start, strict=True))


@pytest.mark.parametrize("cls, hyper", CONFIGS, ids=CONFIG_IDS)
def test_step_allocates_no_parameter_sized_arrays(cls, hyper):
    rng = np.random.default_rng(0)
    param = rng.standard_normal(100_000).astype(np.float32)   # 400 kB
    grad = rng.standard_normal(100_000).astype(np.float32)
    opt = cls([("w", param, grad)], **hyper)
    opt.step()
    tracemalloc.start()
    try:
        opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000


def test_lr_attribute_drives_the_next_step():
    param, grad = P0.copy(), G1.copy()
    opt = SGD([("w", param, grad)], lr=0.1)
    opt.lr = 0.5
    opt.step()
    np.testing.assert_allclose(param, [0.75, -2.5], rtol=1e-15)


# ---------------------------------------------------------------------- clipping


def test_clip_grad_norm_scales_to_max_norm():
    a, b = np.array([3.0, 4.0]), np.array([[12.0]])       # global norm sqrt(9+16+144) = 13
    total = clip_grad_norm([a, b], max_norm=6.5)
    assert total == 13.0
    coef = 6.5 / (13.0 + 1e-6)
    np.testing.assert_allclose(a, [3.0 * coef, 4.0 * coef], rtol=1e-15)
    np.testing.assert_allclose(b, [[12.0 * coef]], rtol=1e-15)
    assert math.isclose(math.sqrt(np.sum(a**2) + np.sum(b**2)), 6.5, rel_tol=1e-6)


def test_clip_grad_norm_leaves_small_gradients_alone():
    a = np.array([0.3, 0.4], dtype=np.float32)
    total = clip_grad_norm(iter([a]), max_norm=1.0)
    assert isinstance(total, float)
    assert math.isclose(total, 0.5, rel_tol=1e-7)
    assert np.array_equal(a, np.array([0.3, 0.4], dtype=np.float32))


def test_clip_grad_norm_float32_stays_float32_in_place():
    a = np.full(10, 10.0, dtype=np.float32)
    ref = a
    clip_grad_norm([a], max_norm=1.0)
    assert a is ref and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a.astype(np.float64)), 1.0, rtol=1e-6)


def test_clip_grad_norm_non_finite_returns_norm_untouched():
    a = np.array([np.inf, 1.0])
    assert clip_grad_norm([a], max_norm=1.0) == math.inf
    assert np.array_equal(a, [np.inf, 1.0])
    b = np.array([np.nan, 1.0])
    assert math.isnan(clip_grad_norm([b], max_norm=1.0))


def test_grad_norm_is_the_global_norm_and_non_finite_on_any_bad_entry():
    flat = np.arange(1.0, 8.0, dtype=np.float32)
    a, b = flat[:3], flat[3:].reshape(2, 2)  # one packed array, as Sequential lays it out
    assert grad_norm([a, b]) == pytest.approx(math.sqrt(sum(v * v for v in range(1, 8))), rel=1e-7)
    assert grad_norm([a.copy(), b.copy()]) == grad_norm([a, b])
    assert grad_norm([]) == 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for bad in (np.nan, np.inf, -np.inf):
            b[1, 0] = bad
            assert not math.isfinite(grad_norm([a, b]))
            assert not math.isfinite(grad_norm([b]))


def test_clip_grad_norm_uses_a_given_norm():
    a = np.array([3.0, 4.0])
    assert clip_grad_norm([a], max_norm=1.0, norm=10.0) == 10.0
    np.testing.assert_allclose(a, [0.3, 0.4], rtol=1e-6)


@pytest.mark.parametrize("max_norm", [0.0, -1.0])
def test_clip_grad_norm_rejects_non_positive_max_norm(max_norm):
    with pytest.raises(ValueError, match="^max_norm "):
        clip_grad_norm([np.ones(2)], max_norm)
