"""Random and malformed experiment files and ``--set`` overrides: the loader either returns
a valid ``Experiment`` or raises ``ConfigError`` naming the file or the override, nothing else.
"""

from __future__ import annotations

import copy
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnback.config import Experiment, load_config
from nnback.errors import ConfigError

VALID = {
    "name": "fuzz",
    "seed": 0,
    "data": {"source": "spiral", "classes": 3, "points_per_class": 20, "noise": 0.2,
             "split": {"val": 0.2, "test": 0.1}, "preprocess": "standardize"},
    "model": {"layers": [{"type": "linear", "units": 16}, "relu", {"type": "dropout", "p": 0.1},
                         {"type": "linear", "units": "auto"}]},
    "loss": {"type": "softmax_cross_entropy", "label_smoothing": 0.1},
    "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1.0e-4},
    "schedule": {"type": "cosine", "warmup_epochs": 1},
    "train": {"epochs": 5, "batch_size": 8, "early_stopping": {"metric": "val_loss", "patience": 2},
              "max_time": "30m", "checkpoint": {"every_steps": 3, "keep": 2},
              "divergence": {"skip_batches": 1}},
    "output": {"dir": "runs"},
}
MLP_MODEL = {"mlp": {"hidden": [32, 16], "activation": "tanh", "dropout": 0.1, "norm": "batchnorm"}}

ODD_VALUES = [None, True, False, 0, -1, 1, 2**63, -(2**63), 10**40, 0.5, -0.5, 1e308, -1e308,
              float("nan"), float("inf"), float("-inf"), "", " ", "auto", "none", "relu", "30m",
              "ünïcødé ✓", "1e-3", "\t\n", "{a: 1}", "- x", "~", [], {}, [1, 2], {"type": "relu"}]
scalars = st.one_of(
    st.sampled_from(ODD_VALUES),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
keys = st.sampled_from(["type", "units", "lr", "epochs", "source", "split", "mlp", "layers", "train",
                        "every_steps", "patience", "max_time"]) | st.text(max_size=10)

# Settings for every property: bounded, reproducible, no per-example deadline.
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _entries(node):
    """Every (container, key) pair in a nested dict/list tree, the top level included."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items):
        yield node, key
        if isinstance(value, (dict, list)):
            yield from _entries(value)


@st.composite
def mutated_configs(draw):
    """VALID (or its compact-model twin) with one to four keys dropped, replaced or added."""
    config = copy.deepcopy(VALID)
    if draw(st.booleans()):
        config["model"] = copy.deepcopy(MLP_MODEL)
    for _ in range(draw(st.integers(1, 4))):
        entries = list(_entries(config))
        if not entries:
            break
        container, key = draw(st.sampled_from(entries))
        action = draw(st.sampled_from(["drop", "replace", "add"]))
        if action == "drop":
            del container[key]
        elif action == "replace":
            container[key] = draw(values)
        elif isinstance(container, dict):
            container[draw(keys)] = draw(values)
        else:
            container.append(draw(values))
    return config


def dotted_keys(node, prefix=""):
    """Every dotted key of a nested config, lists indexed: ``model.layers.0.units``."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        yield path
        if isinstance(value, (dict, list)):
            yield from dotted_keys(value, path)


override_keys = st.sampled_from(sorted(dotted_keys(VALID))) | st.text(max_size=15)
override_texts = st.sampled_from(["", "nan", ".inf", "-1", "0", "1e999", "[1, 2", "{a: 1}", "null",
                                  "true", "ÿ", "0x10", "1_000", "[]", "{}", "'", "a: b: c", "- 1",
                                  "!!python/object:os.system", "*alias", "&x 1"]) | st.text(max_size=12)
overrides = st.lists(
    st.builds(lambda k, v: f"{k}={v}", override_keys, override_texts) | st.text(max_size=15),
    max_size=4,
)


def assert_loads_or_config_error(path, extra=()) -> None:
    """The property: a valid Experiment, or ConfigError whose messages name the file or --set."""
    try:
        exp = load_config(path, extra)
    except ConfigError as exc:
        assert exc.messages
        for message in exc.messages:
            assert isinstance(message, str) and message.startswith((f"{path}: ", "--set ")), message
        return
    assert isinstance(exp, Experiment)
    dumped = exp.model_dump(mode="json")
    assert Experiment.model_validate(dumped) == exp
    assert exp.optimizer.lr > 0 and math.isfinite(exp.optimizer.lr)


@pytest.fixture
def cfg_path(tmp_path):
    return tmp_path / "cfg.yaml"


def test_the_valid_config_loads(cfg_path):
    for model in (VALID["model"], MLP_MODEL):
        cfg_path.write_text(yaml.safe_dump({**VALID, "model": model}), encoding="utf-8")
        assert load_config(cfg_path).name == "fuzz"


@FUZZ
@given(text=st.text(max_size=200))
def test_random_text_documents(cfg_path, text):
    cfg_path.write_text(text, encoding="utf-8")
    assert_loads_or_config_error(cfg_path)


@FUZZ
@given(doc=values)
def test_random_yaml_structures(cfg_path, doc):
    cfg_path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    assert_loads_or_config_error(cfg_path)


@FUZZ
@given(config=mutated_configs())
def test_mutated_valid_configs(cfg_path, config):
    cfg_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    assert_loads_or_config_error(cfg_path)


@FUZZ
@given(config=st.sampled_from([VALID, {**VALID, "model": MLP_MODEL}]), extra=overrides)
def test_random_overrides(cfg_path, config, extra):
    cfg_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert_loads_or_config_error(cfg_path, extra)


@FUZZ
@given(data=st.binary(max_size=120))
def test_random_bytes(cfg_path, data):
    cfg_path.write_bytes(data)
    assert_loads_or_config_error(cfg_path)


YAML_PIECES = ["&a ", "*a", "&b ", "*b", "<<: ", "<<: *a", "[", "]", "{", "}", ", ", ": ", "- ", "\n", "  ",
               "!!python/object:os.system ", "!!binary ", "!!int ", "!!float ", "!!set ", "!!omap ", "? ",
               "!!map ", "!!seq ", "!!str ", "!!bool ", "!!timestamp ", "!!null ", "!!pairs ",
               "9" * 120, "0b" + "1" * 200, "0x" + "f" * 150, "1_000", "1:30:00", ".nan", "~", "'", '"',
               "name", "tiny", "seed", "data", "lr", "%YAML 1.1\n", "---\n", "...\n", "|\n", ">-\n", "#"]


@FUZZ
@given(pieces=st.lists(st.sampled_from(YAML_PIECES), max_size=40), prefix=st.booleans())
def test_yaml_with_anchors_tags_and_nesting(cfg_path, pieces, prefix):
    """Aliases, merge keys, tags, directives and long numbers in any order: bounded, one error."""
    text = "".join(pieces)
    cfg_path.write_text((yaml.safe_dump(VALID) if prefix else "") + text, encoding="utf-8")
    assert_loads_or_config_error(cfg_path)
    assert_loads_or_config_error(cfg_path, [f"seed={text}"])
