"""Experiment files built to exhaust memory, the stack or time, and experiment names that
would leave output.dir: each ends at once with one line naming the file (exit 2).

The commands run in a subprocess with an address-space limit and a generous timeout, so
a regression fails the test instead of taking the machine down; no timing is asserted.
"""

from __future__ import annotations

import os
import resource
import subprocess

import pytest
import yaml
from conftest import TINY_CONFIG, nnback_command

from nnback.config.loader import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, load_config, read_yaml
from nnback.errors import ConfigError

TINY = yaml.safe_dump(TINY_CONFIG, sort_keys=False)


def _laughs(levels: int = 9, fanout: int = 9) -> str:
    """The "billion laughs": each anchor a list of `fanout` aliases of the previous one."""
    lines = ["l0: &l0 [lol]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fanout)}]")
    return "\n".join(lines) + "\n"


def _merge_bomb(levels: int = 12) -> str:
    """Merge keys (<<) that flatten the previous mapping nine times per level."""
    lines = ["m0: &m0 {a: 1}"]
    for i in range(1, levels + 1):
        lines.append(f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}], k{i}: 1}}")
    return "\n".join(lines) + "\n"


HOSTILE = {
    "billion laughs": (_laughs(), f"more than {MAX_NODES} values with aliases expanded"),
    "billion laughs in the config": (TINY + _laughs().replace("l", "x"), "values with aliases expanded"),
    "merge-key bomb": (_merge_bomb(), "values with aliases expanded"),
    "self-referencing list": ("a: &a [1, *a]\n", "an alias inside its own anchor"),
    "self-referencing mapping": ("a: &a {b: *a}\n", "an alias inside its own anchor"),
    "self-referencing key": ("a: &a {*a : 1}\n", "an alias inside its own anchor"),
    "deep flow nesting": ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", f"nested more than {MAX_DEPTH}"),
    "deep mapping nesting": ("a: " + "{b: " * 5000 + "1" + "}" * 5000 + "\n", "nested more than"),
    "deep block nesting": ("".join(f"{' ' * i}k{i}:\n" for i in range(300)) + " " * 300 + "x: 1\n",
                           "nested more than"),
    "decimal integer beyond the digit limit": ("seed: " + "9" * 5000 + "\n", "an integer of 5000 characters"),
    "binary integer of a million bits": ("seed: 0b" + "1" * 1_000_000 + "\n", "an integer of 1000002"),
    "flat list of too many values": ("a: [" + "0," * MAX_NODES + "0]\n", "values with aliases expanded"),
    "very large file": ("#" * (MAX_FILE_BYTES + 1) + "\n", "is too large for an experiment file"),
}


@pytest.mark.parametrize("text, message", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_yaml_is_one_config_error(tmp_path, text, message):
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert info.value.messages == [str(info.value)]
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("seed: !!int abc", "'abc' is not a valid int"),
    ('seed: !!float ""', "'' is not a valid float"),
    ("seed: !!bool maybe", "'maybe' is not a valid bool"),
    ("seed: !!timestamp 2020-99-99", "'2020-99-99' is not a valid timestamp"),
    ("seed: !!set [1]", "expected a mapping node, but found sequence"),
    ("seed: !!map [1]", "expected a mapping node, but found sequence"),
    ("{[1]: 2}", "found unhashable key"),
], ids=["int", "float", "bool", "timestamp", "set", "map", "unhashable key"])
def test_values_that_do_not_fit_their_tag(tmp_path, text, message):
    """PyYAML's own constructors raise ValueError, IndexError, KeyError... for these."""
    path = tmp_path / "cfg.yaml"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert info.value.messages == [str(info.value)] and message in str(info.value)


def test_aliases_within_bounds_still_work(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(TINY + "shared: &h {type: linear, units: 8}\n", encoding="utf-8")
    raw = read_yaml(path)
    assert raw["shared"] == {"type": "linear", "units": 8}
    text = TINY.replace("  layers:\n", "  layers:\n  - &h {type: linear, units: 8}\n  - relu\n  - *h\n")
    path.write_text(text, encoding="utf-8")
    layers = load_config(path).model.layers
    assert [getattr(layer, "units", None) for layer in layers[:3]] == [8, None, 8]


def test_overrides_do_not_expand_aliases_without_set(tmp_path):
    """With no --set, the parsed document (shared nodes and all) is validated as it is."""
    path = tmp_path / "cfg.yaml"
    path.write_text(TINY + "extra: &e [1, 2]\nmore: *e\n", encoding="utf-8")
    from nnback.config.loader import apply_overrides

    raw = read_yaml(path)
    assert apply_overrides(raw, []) is raw
    changed = apply_overrides(raw, ["extra.0=5"])
    assert changed["extra"] == [5, 2] and changed["more"] == [1, 2] and raw["extra"] == [1, 2]


@pytest.mark.parametrize("value, message", [
    ("9" * 5000, "an integer of 5000 characters"),
    ("[" * 10_000, "nested more than"),
    ("&a [*a]", "an alias inside its own anchor"),
], ids=["long integer", "deep nesting", "recursive alias"])
def test_hostile_override_values(tmp_path, value, message):
    path = tmp_path / "cfg.yaml"
    path.write_text(TINY, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"^--set seed: cannot parse value .*{message}"):
        load_config(path, [f"seed={value}"])


def _limited_memory():
    """Child process: at most 2 GiB of address space, so an expansion fails fast."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


@pytest.mark.parametrize("target", ["laughs", "deep", "zero", "fifo"])
def test_command_ends_with_exit_2_and_one_line(tmp_path, target):
    path = tmp_path / "cfg.yaml"
    if target == "laughs":
        path.write_text(TINY + _laughs(), encoding="utf-8")
    elif target == "deep":
        path.write_text("a: " + "[" * 100_000 + "]" * 100_000, encoding="utf-8")
    elif target == "zero":
        path = "/dev/zero"
    else:
        os.mkfifo(path)
    for command in ("validate", "train") if target == "laughs" else ("train",):
        done = subprocess.run(nnback_command(command, path), cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, preexec_fn=_limited_memory)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"error: {path}: "), done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["../escape", "../../x", "/tmp/abs", "a/b", "..", ".", ".hidden",
                                  "a\x00b", "tab\there", "new\nline", "a b", "-flag", "x" * 101,
                                  "semi;colon", "back\\slash", "star*", "dollar$", "q?", "\u202eevil"])
def test_experiment_name_must_be_one_plain_folder_name(tmp_path, name):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({**TINY_CONFIG, "name": name}), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.messages == [f"{path}: name: must be one plain folder name: letters, digits and "
                                   f"- _ . + = , @, starting with a letter or digit, at most 100 "
                                   f"characters (got {name[:40]!r}{'...' if len(name) > 40 else ''}); "
                                   f"the run folder is named after it"]


@pytest.mark.parametrize("name", ["tiny", "digits-mlp", "lr=0.1,bs=32", "v1.2", "run_7", "ünïcode", "a@b"])
def test_plain_names_are_accepted(tmp_path, name):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({**TINY_CONFIG, "name": name}), encoding="utf-8")
    assert load_config(path).name == name


@pytest.mark.parametrize("name", ["my run (v1)", "../../escape", "a/b"])
def test_with_out_the_name_is_a_label_and_makes_no_folder(write_config, nnback_cli, tmp_path, name):
    cfg = write_config({"name": name, "train": {"epochs": 1}})
    result = nnback_cli("train", cfg, "--out", "run", "-q")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml", "run"]
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["name"] == name
    assert nnback_cli("validate", cfg).stderr.startswith(f"error: {cfg}: name: must be one plain folder name")


def test_name_override_is_checked_too(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(TINY, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cfg.yaml: name: must be one plain folder name"):
        load_config(path, ["name=../../etc"])
