"""The experiment schema and its loader: short forms, overrides, messages, round trips."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from nnback.build import build_model
from nnback.config import Experiment, apply_overrides, load_config, read_yaml, validate
from nnback.config.loader import read_saved_config
from nnback.config.schema import LAYER_SECTIONS
from nnback.errors import ConfigError

CONFIGS = sorted((Path(__file__).parent.parent / "config").glob("*.yaml"))

TINY = {
    "name": "tiny",
    "data": {"source": "spiral", "points_per_class": 10},
    "model": {"layers": [{"type": "linear", "units": 8}, "relu", {"type": "linear", "units": "auto"}]},
    "loss": "softmax_cross_entropy",
    "optimizer": "adam",
}


def messages(raw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate(raw, "cfg.yaml")
    return info.value.messages


def test_issue_example_loads():
    exp = load_config(Path(__file__).parent.parent / "config" / "digits-mlp.yaml")
    assert exp.name == "digits-mlp"
    assert exp.data.source == "digits"
    assert (exp.data.split.val, exp.data.split.test) == (0.15, 0.15)
    assert exp.data.preprocess.type == "standardize"
    assert [layer.type for layer in exp.model.layers] == ["linear", "relu", "dropout", "linear"]
    assert exp.model.layers[2].p == 0.1
    assert (exp.optimizer.type, exp.optimizer.momentum, exp.optimizer.weight_decay) == ("sgd", 0.9, 1e-4)
    assert (exp.schedule.type, exp.schedule.warmup_epochs) == ("cosine", 1)
    assert (exp.train.early_stopping.metric, exp.train.early_stopping.patience) == ("val_loss", 5)


def test_short_forms_and_defaults():
    exp = validate(TINY, "cfg.yaml")
    assert exp.loss.type == "softmax_cross_entropy" and exp.loss.label_smoothing == 0.0
    assert (exp.optimizer.type, exp.optimizer.lr, exp.optimizer.betas) == ("adam", 1e-3, (0.9, 0.999))
    assert exp.model.layers[1].type == "relu"
    assert exp.schedule.type == "constant" and exp.schedule.warmup_epochs == 0
    assert (exp.train.epochs, exp.train.batch_size, exp.output.dir, exp.seed) == (10, 64, "runs", 0)


def test_mlp_expands_to_explicit_layers():
    compact = {**TINY, "model": {"mlp": {"hidden": [16, 8], "activation": "tanh", "dropout": 0.2,
                                         "norm": "layernorm", "init": "xavier_uniform"}}}
    explicit = {**TINY, "model": {"layers": [
        {"type": "linear", "units": 16, "init": "xavier_uniform"}, "layernorm", "tanh",
        {"type": "dropout", "p": 0.2},
        {"type": "linear", "units": 8, "init": "xavier_uniform"}, "layernorm", "tanh",
        {"type": "dropout", "p": 0.2},
        {"type": "linear", "units": "auto", "init": "xavier_uniform"},
    ]}}
    a, b = validate(compact, "a.yaml"), validate(explicit, "b.yaml")
    assert a.model.layer_specs() == b.model.layer_specs()
    model_a = build_model(a, 2, 3, np.random.default_rng(7), "a.yaml")
    model_b = build_model(b, 2, 3, np.random.default_rng(7), "b.yaml")
    assert [repr(layer) for layer in model_a.layers] == [repr(layer) for layer in model_b.layers]
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert list(state_a) == list(state_b)
    for name in state_a:
        np.testing.assert_array_equal(state_a[name], state_b[name])


def test_mlp_without_hidden_layers_is_linear():
    exp = validate({**TINY, "model": {"mlp": {"hidden": []}}}, "cfg.yaml")
    assert exp.model.layer_specs() == [LAYER_SECTIONS["linear"](type="linear", units="auto")]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_resolved_config_loads_to_the_same_experiment(path, tmp_path):
    exp = load_config(path)
    resolved = tmp_path / "config.yaml"
    resolved.write_text(yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False))
    assert load_config(resolved) == exp


def test_resolved_csv_config_loads_again():
    raw = {**TINY, "data": {"source": "d.csv", "target": "label", "preprocess": "minmax"}}
    exp = validate(raw, "cfg.yaml")
    assert validate(exp.model_dump(mode="json"), "again.yaml") == exp


def test_overrides_parse_yaml_scalars_and_leave_the_input_alone():
    raw = {**TINY, "optimizer": "sgd", "train": {"epochs": 3}}
    out = apply_overrides(raw, ["optimizer.lr=1e-3", "train.epochs=5", "optimizer.nesterov=true",
                                "optimizer.momentum=0.5", "model.layers.0.units=32",
                                "data.split={val: 0.2}", "model.layers.1=tanh", "train.max_time=90"])
    assert raw["optimizer"] == "sgd" and raw["train"] == {"epochs": 3}
    assert out["optimizer"] == {"type": "sgd", "lr": "1e-3", "nesterov": True, "momentum": 0.5}
    assert out["model"]["layers"][:2] == [{"type": "linear", "units": 32}, "tanh"]
    assert raw["model"]["layers"][0]["units"] == 8
    exp = validate(out, "cfg.yaml")
    assert (exp.train.epochs, exp.data.split.val, exp.model.layers[1].type) == (5, 0.2, "tanh")
    assert exp.optimizer.lr == 1e-3  # YAML 1.1 reads 1e-3 as text; the schema makes it a number
    assert exp.train.max_time == "90"


def test_override_creates_missing_sections():
    exp = validate(apply_overrides(TINY, ["schedule.type=cosine", "train.early_stopping.patience=2",
                                          "data.split.val=0.3"]), "cfg.yaml")
    assert exp.schedule.type == "cosine"
    assert exp.train.early_stopping.patience == 2


def test_override_into_a_scalar_is_an_error():
    with pytest.raises(ConfigError, match=r"^--set model\.layers\.1\.x=1: model\.layers\.1 is 'relu', "
                                          r"not a mapping or list$"):
        apply_overrides(TINY, ["model.layers.1.x=1"])


def test_read_yaml_rejects_python_tags(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: line 1, column 7: YAML syntax error: could not "
                                          r"determine a constructor"):
        read_yaml(path)


def test_read_yaml_allows_the_same_key_in_different_mappings(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("a: {type: x}\nb: {type: y}\n")
    assert read_yaml(path) == {"a": {"type": "x"}, "b": {"type": "y"}}


def test_unreadable_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r": is a folder, expected a regular file$"):
        read_yaml(tmp_path)


def test_every_problem_one_line_each():
    raw = {**TINY, "seed": -2, "optimizer": {"type": "adam", "lr": 0, "eps": "tiny"},
           "train": {"epochs": 0, "batch_size": 0, "earlystopping": {}}}
    assert messages(raw) == [
        "cfg.yaml: seed: must be at least 0 (got -2)",
        "cfg.yaml: optimizer.lr: must be greater than 0 (got 0)",
        "cfg.yaml: optimizer.eps: must be a number (got 'tiny')",
        "cfg.yaml: train.epochs: must be at least 1 (got 0)",
        "cfg.yaml: train.batch_size: must be at least 1 (got 0)",
        "cfg.yaml: train.earlystopping: unknown key 'earlystopping' (did you mean 'early_stopping'?)",
    ]


def test_misspelt_required_section_is_reported_once():
    raw = dict(TINY)
    raw["los"] = raw.pop("loss")
    assert messages(raw) == ["cfg.yaml: los: unknown key 'los' (did you mean 'loss'?)"]


def test_missing_section_without_a_misspelling():
    raw = {k: v for k, v in TINY.items() if k != "loss"}
    assert messages(raw) == ["cfg.yaml: loss: required key is missing"]


def test_key_of_the_wrong_data_variant_lists_the_valid_ones():
    raw = {**TINY, "data": {"source": "digits", "classes": 3}}
    assert messages(raw) == ["cfg.yaml: data.classes: unknown key 'classes'; valid keys: preprocess, "
                             "seed, shape, source, split"]


def test_check_messages_name_nested_keys():
    mnist = {**TINY, "data": {"source": "mnist", "split": {"test": 0.1}}}
    assert messages(mnist) == ["cfg.yaml: data.split.test: mnist has its own test set; remove split.test"]
    csv = {**TINY, "data": {"source": "d.csv"}}
    assert messages(csv) == ["cfg.yaml: data.target: name the label column of the CSV file"]


def test_early_stopping_accepts_a_validation_file():
    raw = {**TINY, "data": {"train": "a.csv", "val": "b.csv", "target": "y"},
           "train": {"early_stopping": {"metric": "val_accuracy"}}}
    assert validate(raw, "cfg.yaml").train.early_stopping.metric == "val_accuracy"
    raw["data"] = {"train": "a.csv", "target": "y"}
    assert messages(raw) == ["cfg.yaml: train.early_stopping: needs a validation split: set "
                             "data.split.val (e.g. 0.15) or a data.val file"]


@pytest.mark.parametrize("value, kept", [(45, "45"), ("1h30m", "1h30m"), (None, None)])
def test_max_time_accepts_durations(value, kept):
    exp = validate({**TINY, "train": {"max_time": value}}, "cfg.yaml")
    assert exp.train.max_time == kept


def test_experiment_dump_has_every_section():
    dumped = validate(TINY, "cfg.yaml").model_dump(mode="json")
    assert list(dumped) == list(Experiment.model_fields)
    assert dumped["train"]["checkpoint"] == {"every_epochs": 1, "every_steps": None,
                                            "every_seconds": 300.0, "keep": 3}


def test_every_field_is_described():
    from pydantic import BaseModel

    from nnback.config.loader import _models_in

    seen, todo = set(), [Experiment]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            todo.extend(m for m in _models_in(field.annotation) if issubclass(m, BaseModel))
    assert len(seen) > 20


@pytest.mark.parametrize("name, default", [("adam", 0.0), ("adamw", 0.01)])
def test_null_option_means_its_default(name, default):
    exp = validate({**TINY, "optimizer": {"type": name, "weight_decay": None}}, "cfg.yaml")
    assert exp.optimizer.weight_decay == default


def test_saved_config_is_read_as_todays_schema_resolves_it(tmp_path):
    saved = {**TINY, "loss": {"type": "hinge"}, "optimizer": {"type": "adamw", "weight_decay": None}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(saved))
    resolved = read_saved_config(path)
    assert resolved["loss"] == {"type": "hinge", "margin": 1.0}
    assert resolved["optimizer"]["weight_decay"] == 0.01
    path.write_text(yaml.safe_dump({**saved, "name": ""}))  # no longer valid: kept as written
    assert read_saved_config(path)["optimizer"]["weight_decay"] is None
