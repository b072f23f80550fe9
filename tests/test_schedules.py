"""Learning-rate schedules: values at known steps, warm-up, monotonicity, errors."""

import math
from itertools import pairwise

import pytest

from nnback.schedules import SCHEDULES, constant, cosine, exponential, make_schedule, step_decay


def test_registry_names():
    assert SCHEDULES == {"constant": constant, "step": step_decay,
                         "exponential": exponential, "cosine": cosine}


def test_constant():
    lr_at = make_schedule("constant", 0.1, total_steps=10)
    assert [lr_at(s) for s in (0, 5, 9, 50)] == [0.1, 0.1, 0.1, 0.1]


def test_step_decay_boundaries():
    lr_at = make_schedule("step", 1.0, total_steps=20, step_size=3, gamma=0.5)
    assert [lr_at(s) for s in range(8)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_step_decay_default_gamma_is_torch_default():
    assert step_decay(10, 1.0, 100, step_size=10) == pytest.approx(0.1, rel=1e-15)


def test_exponential_is_per_step():
    lr_at = make_schedule("exponential", 2.0, total_steps=10, gamma=0.5)
    assert [lr_at(s) for s in range(4)] == [2.0, 1.0, 0.5, 0.25]


def test_cosine_endpoints_and_midpoint():
    lr_at = make_schedule("cosine", 1.0, total_steps=100, min_lr=0.1)
    assert lr_at(0) == 1.0
    assert lr_at(50) == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-15)        # cos(pi/2) = 0
    assert lr_at(25) == pytest.approx(0.1 + 0.9 * (1 + math.sqrt(0.5)) / 2, rel=1e-15)
    assert lr_at(100) == pytest.approx(0.1, rel=1e-15)
    assert lr_at(150) == pytest.approx(0.1, rel=1e-15)


def test_cosine_default_min_lr_is_zero():
    assert cosine(10, 0.5, 10) == pytest.approx(0.0, abs=1e-17)


def test_linear_warmup_ramp_then_schedule():
    lr_at = make_schedule("constant", 1.0, total_steps=10, warmup_steps=4)
    # base_lr * (step + 1) / (warmup_steps + 1), then base_lr from step 4 on
    assert [lr_at(s) for s in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0],
                                                         rel=1e-15)


def test_cosine_after_warmup_runs_over_the_remaining_steps():
    lr_at = make_schedule("cosine", 1.0, total_steps=110, warmup_steps=10, min_lr=0.0)
    assert lr_at(9) == pytest.approx(10 / 11, rel=1e-15)
    assert lr_at(10) == 1.0
    assert lr_at(60) == pytest.approx(0.5, rel=1e-15)     # middle of the 100 decay steps
    assert lr_at(110) == pytest.approx(0.0, abs=1e-17)


def test_step_decay_counts_from_the_end_of_warmup():
    lr_at = make_schedule("step", 1.0, total_steps=20, warmup_steps=2, step_size=3, gamma=0.5)
    assert [lr_at(s) for s in range(2, 9)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


@pytest.mark.parametrize("name, params", [
    ("constant", {}),
    ("step", {"step_size": 7, "gamma": 0.3}),
    ("exponential", {"gamma": 0.97}),
    ("cosine", {"min_lr": 1e-4}),
])
def test_warmup_rises_then_schedule_never_rises(name, params):
    lr_at = make_schedule(name, 0.1, total_steps=200, warmup_steps=20, **params)
    lrs = [lr_at(s) for s in range(250)]
    assert all(a < b for a, b in pairwise(lrs[:21]))
    assert all(a >= b for a, b in pairwise(lrs[20:]))
    assert lrs[20] == 0.1
    assert all(isinstance(lr, float) and lr > 0 for lr in lrs)


@pytest.mark.parametrize("args, kwargs, name", [
    (("linear", 0.1, 10), {}, "schedule"),
    (("constant", -0.1, 10), {}, "base_lr"),
    (("constant", 0.1, 0), {}, "total_steps"),
    (("constant", 0.1, 10.0), {}, "total_steps"),
    (("constant", 0.1, 10), {"warmup_steps": 10}, "warmup_steps"),
    (("constant", 0.1, 10), {"warmup_steps": -1}, "warmup_steps"),
    (("step", 0.1, 10), {"step_size": 0}, "step_size"),
    (("step", 0.1, 10), {"step_size": 2.5}, "step_size"),
    (("step", 0.1, 10), {"step_size": 2, "gamma": 0.0}, "gamma"),
    (("exponential", 0.1, 10), {"gamma": -0.5}, "gamma"),
    (("cosine", 0.1, 10), {"min_lr": -1e-3}, "min_lr"),
])
def test_invalid_settings_are_named(args, kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        make_schedule(*args, **kwargs)


@pytest.mark.parametrize("name, params, fragment", [
    ("step", {}, "step_size"),
    ("exponential", {}, "gamma"),
    ("cosine", {"gamma": 0.5}, "gamma"),
])
def test_missing_or_unknown_parameter_is_named(name, params, fragment):
    with pytest.raises(ValueError, match=rf"schedule '{name}'.*{fragment}"):
        make_schedule(name, 0.1, 10, **params)


@pytest.mark.parametrize("step", [-1, 1.5])
def test_invalid_step(step):
    lr_at = make_schedule("cosine", 0.1, 10, warmup_steps=2)
    with pytest.raises(ValueError, match="^step must be"):
        lr_at(step)
