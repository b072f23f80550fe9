"""Learning-rate schedules: small pure functions of the optimizer step.

Every schedule is ``fn(step, base_lr, total_steps, **params) -> lr`` with ``step`` the
0-based optimizer step. Everything is counted in steps: the trainer converts
epoch-valued settings (``warmup_epochs``, a step size in epochs) to steps.

``make_schedule`` adds an optional linear warm-up in front of any schedule: during the
first ``warmup_steps`` steps the rate rises linearly, ``base_lr * (step + 1) /
(warmup_steps + 1)``, and the schedule proper then starts from its own step 0 at
``step == warmup_steps`` and runs over the remaining ``total_steps - warmup_steps``
steps (as ``LinearLR`` followed by the schedule in PyTorch's ``SequentialLR``).

Example:
    >>> lr_at = make_schedule("cosine", 1e-3, total_steps=1000, warmup_steps=100)
    >>> opt.lr = lr_at(step)
"""

import inspect
import math
from numbers import Integral

from nnback.spec import Option, Spec, with_spec


@with_spec(Spec(name="constant", doc="The optimizer's lr throughout."))
def constant(step, base_lr, total_steps):
    """``base_lr`` at every step."""
    _check_step(step)
    return _constant(step, base_lr, total_steps)


def _constant(step, base_lr, total_steps):
    return float(base_lr)


@with_spec(Spec(
    name="step", doc="Multiply lr by gamma every step_epochs epochs.",
    options=(Option("step_epochs", float, 10, "Epochs between decays.", gt=0,
                    arg="step_size", unit="epochs"),
             Option("gamma", float, 0.1, "Decay factor.", gt=0, le=1)),
))
def step_decay(step, base_lr, total_steps, step_size, gamma=0.1):
    """``base_lr * gamma ** (step // step_size)``: multiply by ``gamma`` every ``step_size`` steps.

    Args:
        step_size: steps between decays (integer >= 1).
        gamma: factor per decay, in (0, 1].
    """
    _check_step(step)
    _require(isinstance(step_size, Integral) and step_size >= 1, "step_size",
             "an integer >= 1", step_size)
    step_decay.spec.check(gamma=gamma)
    return _step_decay(step, base_lr, total_steps, step_size, gamma)


def _step_decay(step, base_lr, total_steps, step_size, gamma=0.1):
    return float(base_lr * gamma ** (step // step_size))


@with_spec(Spec(
    name="exponential", doc="Multiply lr by gamma every epoch, smoothly.",
    options=(Option("gamma", float, 0.95, "Decay factor per epoch.", gt=0, le=1, unit="per epoch"),),
))
def exponential(step, base_lr, total_steps, gamma):
    """``base_lr * gamma ** step``: multiply by ``gamma`` every step.

    Args:
        gamma: factor per step, in (0, 1]; a per-epoch factor ``g`` is ``g ** (1 / steps_per_epoch)``
            per step.
    """
    _check_step(step)
    exponential.spec.check(gamma=gamma)
    return _exponential(step, base_lr, total_steps, gamma)


def _exponential(step, base_lr, total_steps, gamma):
    return float(base_lr * gamma ** step)


@with_spec(Spec(
    name="cosine", doc="Cosine decay from lr to min_lr over the run.",
    options=(Option("min_lr", float, 0.0, "Learning rate at the last step.", ge=0),),
))
def cosine(step, base_lr, total_steps, min_lr=0.0):
    """Half a cosine from ``base_lr`` at step 0 to ``min_lr`` at ``total_steps``, then flat.

    ``min_lr + (base_lr - min_lr) * (1 + cos(pi * step / total_steps)) / 2``, the closed
    form of PyTorch's ``CosineAnnealingLR`` (``T_max = total_steps``, ``eta_min =
    min_lr``), held at ``min_lr`` after ``total_steps`` instead of rising again.

    Args:
        min_lr: final learning rate (>= 0).
    """
    _check_step(step)
    cosine.spec.check(min_lr=min_lr)
    return _cosine(step, base_lr, total_steps, min_lr)


def _cosine(step, base_lr, total_steps, min_lr=0.0):
    progress = min(step, total_steps) / total_steps
    return float(min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2)


SCHEDULES = {fn.spec.name: fn for fn in (constant, step_decay, exponential, cosine)}
# The arithmetic of each schedule without the argument checks, for ``lr_at``: make_schedule
# checks the arguments once, so the per-step call is the formula alone.
_FORMULAS = {constant: _constant, step_decay: _step_decay, exponential: _exponential,
             cosine: _cosine}


def make_schedule(name, base_lr, total_steps, warmup_steps=0, **params):
    """Build ``lr_at(step) -> float`` for a named schedule, with optional linear warm-up.

    Args:
        name: a key of ``SCHEDULES``: "constant", "step", "exponential" or "cosine".
        base_lr: peak learning rate (>= 0).
        total_steps: optimizer steps in the whole run, warm-up included (integer >= 1).
        warmup_steps: steps of linear warm-up (integer, 0 <= warmup_steps < total_steps).
        **params: the schedule's own parameters (``step_size``, ``gamma``, ``min_lr``).

    Returns:
        A function of the 0-based step returning the learning rate.

    Raises:
        ValueError: unknown name, unknown or missing parameter, or a value out of range
            (the message names the parameter).
    """
    _require(name in SCHEDULES, "schedule", f"one of {sorted(SCHEDULES)}", name)
    _require(base_lr >= 0, "base_lr", ">= 0", base_lr)
    _require(isinstance(total_steps, Integral) and total_steps >= 1, "total_steps",
             "an integer >= 1", total_steps)
    _require(isinstance(warmup_steps, Integral) and 0 <= warmup_steps < total_steps,
             "warmup_steps", f"an integer in [0, total_steps={total_steps})", warmup_steps)
    fn = SCHEDULES[name]
    try:
        inspect.signature(fn).bind(0, base_lr, total_steps, **params)
    except TypeError as exc:
        raise ValueError(f"schedule {name!r}: {exc}") from None
    decay_steps = total_steps - warmup_steps
    fn(0, base_lr, decay_steps, **params)
    formula = _FORMULAS[fn]

    def lr_at(step):
        _check_step(step)
        if step < warmup_steps:
            return base_lr * (step + 1) / (warmup_steps + 1)
        return formula(step - warmup_steps, base_lr, decay_steps, **params)

    return lr_at


def _check_step(step):
    """Reject a step that is not a non-negative integer."""
    _require(isinstance(step, Integral) and step >= 0, "step", "an integer >= 0", step)


def _require(ok, name, rule, value):
    """Raise ``ValueError`` naming the parameter unless ``ok``."""
    if not ok:
        raise ValueError(f"{name} must be {rule}, got {value!r}")
