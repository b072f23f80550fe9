"""The engine constructors and the config schema accept and reject the same values.

Every bound an engine class declares in its spec is tried on both sides: a value just
inside is accepted by the constructor and by the YAML section alike, a value just
outside is rejected by both. The defaults of the constructors are those of the specs.
"""

import inspect
import re

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from nnback.config.schema import LAYER_SECTIONS, LOSS_SECTIONS, OPTIMIZER_SECTIONS, SCHEDULE_SECTIONS
from nnback.registry import LAYERS, LOSSES, OPTIMIZERS, SCHEDULES
from nnback.schedules import make_schedule
from nnback.spec import REQUIRED

STEP = 1e-6  # how far "just inside" and "just outside" are from a bound of a float option


def make_layer(cls, **kwargs):
    accepted = inspect.signature(cls).parameters
    sizes = {"in_features": 4, "num_features": 4, "in_channels": 4, "out_features": 3}
    return cls(**{**{k: v for k, v in sizes.items() if k in accepted}, **kwargs})


def make_optimizer(cls, **kwargs):
    return cls([("w", np.zeros(2), np.zeros(2))], **kwargs)


def make_schedule_of(fn, **kwargs):
    """The schedule with the given arguments and the spec's defaults for the others."""
    arguments = {o.keyword: 1 if o.unit == "epochs" else o.default
                 for o in fn.spec.options if o.default is not REQUIRED}
    return make_schedule(fn.spec.name, 0.1, 10, **{**arguments, **kwargs})


KINDS = [(LAYERS, LAYER_SECTIONS, make_layer), (LOSSES, LOSS_SECTIONS, lambda cls, **kw: cls(**kw)),
         (OPTIMIZERS, OPTIMIZER_SECTIONS, make_optimizer), (SCHEDULES, SCHEDULE_SECTIONS, make_schedule_of)]


def _cases():
    """(name, option, index of a list element or None, value, accepted) for every bound."""
    for table, sections, make in KINDS:
        for name, engine in table.items():
            for option in engine.spec.options:
                step = 1 if option.type is int else STEP
                for key, bound in option.bounds.items():
                    inside, outside = {"gt": (bound + step, bound), "ge": (bound, bound - step),
                                       "lt": (bound - step, bound), "le": (bound, bound + step)}[key]
                    for index in range(option.size) if option.size > 1 else [None]:
                        for value, accepted in ((inside, True), (outside, False)):
                            case = (sections[name], make, engine, option, index, value, accepted)
                            yield pytest.param(*case, id=f"{name}.{option.name}{_at(index)}-{key}-"
                                                         f"{'in' if accepted else 'out'}")


def _at(index):
    return "" if index is None else f"[{index}]"


def _with_element(option, index, value):
    if index is None:
        return value
    values = list(option.default)
    values[index] = value
    return tuple(values)


def _required(engine, keywords=False) -> dict:
    """Values for the options that have no default (Linear's units), by YAML key or keyword."""
    return {o.keyword if keywords else o.name: 3 for o in engine.spec.options if o.default is REQUIRED}


@pytest.mark.parametrize("section, make, engine, option, index, value, accepted", list(_cases()))
def test_bound_on_both_sides(section, make, engine, option, index, value, accepted):
    value = _with_element(option, index, value)
    yaml_side = {"type": engine.spec.name, **_required(engine), option.name: value}
    if accepted:
        assert getattr(section.model_validate(yaml_side), option.name) == value
    else:
        with pytest.raises(ValidationError):
            section.model_validate(yaml_side)
    if option.unit == "epochs":
        return  # the engine takes this option in steps, which the builder rounds to >= 1
    arguments = {**_required(engine, keywords=True), option.keyword: value}
    if accepted:
        make(engine, **arguments)
    else:
        with pytest.raises(ValueError, match="^" + re.escape(f"{option.keyword}{_at(index)} must be ")):
            make(engine, **arguments)


@pytest.mark.parametrize("settings", [{"nesterov": True, "momentum": 0.0},
                                      {"nesterov": True, "momentum": 0.9, "dampening": 0.5}])
def test_nesterov_rule_on_both_sides(settings):
    with pytest.raises(ValidationError, match="nesterov: needs momentum > 0 and dampening 0"):
        OPTIMIZER_SECTIONS["sgd"].model_validate({"type": "sgd", **settings})
    with pytest.raises(ValueError, match="^nesterov: needs momentum > 0 and dampening 0"):
        make_optimizer(OPTIMIZERS["sgd"], **settings)
    fine = {**settings, "momentum": 0.9, "dampening": 0.0}
    OPTIMIZER_SECTIONS["sgd"].model_validate({"type": "sgd", **fine})
    make_optimizer(OPTIMIZERS["sgd"], **fine)


@pytest.mark.parametrize("engine", [*LAYERS.values(), *LOSSES.values(), *OPTIMIZERS.values(),
                                    *SCHEDULES.values()], ids=lambda e: e.spec.name)
def test_constructor_defaults_are_the_spec_defaults(engine):
    parameters = inspect.signature(engine).parameters
    for option in engine.spec.options:
        default = parameters[option.keyword].default
        if option.unit is not None and default is inspect.Parameter.empty:
            continue  # a schedule's per-step argument has no default of its own
        expected = inspect.Parameter.empty if option.default is REQUIRED else option.default
        assert default == expected, option.name


@pytest.mark.parametrize("name, value", [("he_normal", True), ("orthogonal", False)])
def test_initialiser_names_on_both_sides(name, value):
    section = LAYER_SECTIONS["linear"]
    if value:
        section.model_validate({"type": "linear", "units": 3, "init": name})
        make_layer(LAYERS["linear"], init=name)
    else:
        with pytest.raises(ValidationError):
            section.model_validate({"type": "linear", "units": 3, "init": name})
        with pytest.raises(ValueError, match="^init must be one of he_normal, he_uniform"):
            make_layer(LAYERS["linear"], init=name)



def test_sgd_default_learning_rate_is_the_one_earlier_configs_were_trained_with(write_config):
    """A config that leaves out ``optimizer.lr`` keeps training (and resuming) at 0.01 for sgd."""
    from nnback.config import load_config
    from nnback.optim import SGD

    option = next(o for o in SGD.spec.options if o.name == "lr")
    assert option.default == inspect.signature(SGD).parameters["lr"].default == 0.01
    path = write_config()
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    del raw["optimizer"]["lr"]
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert load_config(path).optimizer.lr == 0.01
