"""``nnback schema`` (the YAML reference generated from the pydantic models) and
``nnback init`` (a starter experiment that validates as written)."""

import json
import re

import pytest
import yaml
from typer.testing import CliRunner

from nnback.cli import app
from nnback.commands.init import starter_text
from nnback.commands.schema import _models, sections
from nnback.config import load_config
from nnback.config.schema import Experiment


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def rows_of(text: str, title: str) -> dict[str, list[str]]:
    """The key rows of the section whose heading starts with ``title``: key -> cells."""
    block = next(b for b in text.split("\n\n") if b.startswith(title))
    return {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line.strip()) for line in
                                              block.splitlines()[2:])}


def all_models(model, found=None):
    found = set() if found is None else found
    found.add(model)
    for field in model.model_fields.values():
        for _, sub in _models(field.annotation):
            if sub not in found:
                all_models(sub, found)
    return found


def test_every_key_of_every_section_model_is_listed():
    listed = {(s.title.split(" ")[0].split("[")[0], row[0]) for s in sections(Experiment) for row in s.rows}
    names = {n for s in sections(Experiment) for n in s.names}
    for model in all_models(Experiment):
        for name, field in model.model_fields.items():
            is_section = _models(field.annotation) and not any(key == name for _, key in listed)
            assert is_section or any(key == name for _, key in listed), (model.__name__, name)
            if is_section:
                assert any(n == name or n.endswith("." + name) for n in names), (model.__name__, name)


def test_schema_shows_type_default_bounds_and_description():
    result = invoke("schema")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert rows_of(text, "experiment file")["seed"] == [
        "int", "0", ">= 0", "Seeds data splits, initialisation, shuffling and dropout."]
    assert rows_of(text, "optimizer (type: adam)")["betas"][:2] == [
        "[float (>= 0, < 1), float (>= 0, < 1)]", "[0.9, 0.999]"]
    spiral = rows_of(text, "data (source: spiral)")
    assert spiral["noise"][:3] == ["float", "0.2", ">= 0"]
    assert spiral["seed"][:3] == ["int or null", "null", ">= 0"]  # data.seed
    assert rows_of(text, "data (source: file)")["task"][:2] == ["auto|classification|regression", "auto"]
    assert rows_of(text, "train (optional)")["epochs"][:3] == ["int", "10", ">= 1"]
    assert rows_of(text, "model.layers[] (type: dropout)")["p"][:3] == ["float", "0.5", ">= 0, < 1"]
    assert "train.early_stopping (default: null)" in text
    assert "schedule (type: constant)" in text and "data (source: blobs)" in text


@pytest.mark.parametrize("section, titles", [
    ("optimizer", ["optimizer (type: adam)", "optimizer (type: adamw)", "optimizer (type: rmsprop)",
                   "optimizer (type: sgd)"]),
    ("optimizer.adamw", ["optimizer (type: adamw)"]),
    ("data.spiral", ["data (source: spiral)"]),
    ("train.checkpoint", ["train.checkpoint (optional)"]),
])
def test_schema_of_one_section(section, titles):
    result = invoke("schema", section)
    assert result.exit_code == 0, result.output
    heads = sorted(block.splitlines()[0] for block in result.stdout.split("\n\n"))
    assert len(heads) == len(titles)
    assert all(head.startswith(title + ":") for head, title in zip(heads, titles, strict=True)), heads


def test_schema_of_an_unknown_section_is_one_error_line():
    result = invoke("schema", "optimiser")
    assert result.exit_code == 2
    assert result.stderr == ("error: schema: no section 'optimiser'; sections: data, model, loss, optimizer, "
                             "schedule, train, output (or a variant such as optimizer.adam, data.spiral)\n")


def test_init_writes_a_starter_that_validates_and_trains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("init")
    assert result.exit_code == 0, result.output
    assert result.stdout == "wrote experiment.yaml; next: nnback train experiment.yaml\n"
    text = (tmp_path / "experiment.yaml").read_text()
    assert text == starter_text("experiment.yaml") and text.count("#") > 10  # commented
    assert load_config("experiment.yaml").name == "experiment"
    assert invoke("validate", "experiment.yaml").stdout.endswith("experiment.yaml: valid\n")
    trained = invoke("train", "experiment.yaml", "--out", "run", "-q", "--set", "train.epochs=2")
    assert trained.exit_code == 0, trained.output
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"
    assert not list(tmp_path.glob(".experiment.yaml.*"))  # no temporary file left behind


def test_init_names_the_experiment_after_a_plain_file_name(tmp_path):
    assert yaml.safe_load(starter_text(tmp_path / "iris-wide.yaml"))["name"] == "iris-wide"
    assert yaml.safe_load(starter_text(tmp_path / "my run!.yaml"))["name"] == "experiment"


def test_init_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\n")
    refused = invoke("init", path)
    assert refused.exit_code == 2
    assert refused.stderr == f"error: {path}: already exists; add --force to overwrite it\n"
    assert path.read_text() == "name: mine\n"
    assert invoke("init", path, "--force").exit_code == 0
    assert load_config(path).name == "mine"
    folder = invoke("init", tmp_path)
    assert folder.exit_code == 2 and "is a folder" in folder.stderr


def test_init_names_a_path_with_a_space_as_the_shell_takes_it(tmp_path, monkeypatch):
    """Found by trying: `next: nnback train my exp.yaml` could not be pasted into a shell."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["init", "my exp.yaml"])
    assert result.stdout == "wrote my exp.yaml; next: nnback train 'my exp.yaml'\n"
    text = (tmp_path / "my exp.yaml").read_text()
    assert "`nnback train 'my exp.yaml'`" in text
    lines = text.splitlines()
    assert lines[3].index("#") == lines[4].index("#")  # the name's comment lines up with the others
