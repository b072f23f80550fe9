"""The command line as a new user and a hostile one meet it: every mistake ends with exit 2
and one line on stderr naming what and where, never a traceback or a second line.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnback.errors import ConfigError, DataError, NnbackError, one_line

# Settings for every property: bounded, reproducible, no per-example deadline.
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

CSV_CONFIG = {
    "name": "hostile",
    "data": {"source": "d.csv", "target": "y", "split": {"val": 0.25}},
    "model": {"layers": [{"type": "linear", "units": "auto"}]},
    "loss": "softmax_cross_entropy",
    "optimizer": {"type": "sgd", "lr": 0.1},
    "train": {"epochs": 1, "batch_size": 2},
}
CSV_TEXT = "a,b,y\n" + "1,2,0\n3,4,1\n" * 4

# Characters that end a line for print, a terminal or str.splitlines, or hide text.
BREAKERS = ["\n", "\r", "\r\n", "\t", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029",
            "\x1b[31m", "\x07", "\x08", "\x00", "\u202e"]


@st.composite
def broken_strings(draw):
    """A short string with at least one line-breaking or hiding character in it."""
    text = draw(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8))
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(st.sampled_from(BREAKERS)) + text[at:]


def _with_data(changes: dict) -> dict:
    config = yaml.safe_load(yaml.safe_dump(CSV_CONFIG))
    for key, value in changes.items():
        if value is None:
            config["data"].pop(key)
        else:
            config["data"][key] = value
    return config


# Where a user's string lands in the data section (each variant names one file or column).
PLACES = {
    "source path": lambda s: {"source": s + ".csv"},
    "target column": lambda s: {"target": s},
    "feature column": lambda s: {"features": ["a", s]},
    "x of a pair": lambda s: {"source": {"x": s + ".npy", "y": "y.npy"}, "target": None},
    "y of a pair": lambda s: {"source": {"x": "x.npy", "y": s}, "target": None, "format": "idx"},
    "train file": lambda s: {"source": None, "train": s + ".csv", "split": None},
    "test file": lambda s: {"test": s + ".npz", "source": None, "train": "d.npz", "target": None,
                            "split": None},
    "npz key": lambda s: {"source": "d.npz", "target": None, "x_key": s},
    "unknown key": lambda s: {s: 1},
}


def one_error_line(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, repr(result.stderr)
    assert len(result.stderr[:-1].splitlines()) == 1 and result.stderr[:-1].isprintable(), repr(result.stderr)
    assert result.stderr.startswith("error: ")
    return result.stderr[:-1]


@pytest.fixture
def data_folder(tmp_path):
    (tmp_path / "d.csv").write_text(CSV_TEXT, encoding="utf-8")
    np.savez(tmp_path / "d.npz", X=np.zeros((8, 2)), y=np.arange(8) % 2)
    return tmp_path


@FUZZ
@given(place=st.sampled_from(sorted(PLACES)), text=broken_strings())
def test_a_path_or_column_with_control_characters_gives_one_line(data_folder, nnback_cli, place, text):
    cfg = data_folder / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_with_data(PLACES[place](text))), encoding="utf-8")
    line = one_error_line(nnback_cli("validate", cfg))
    assert one_line(text.strip()) in line or place in ("x of a pair", "y of a pair"), line


@FUZZ
@given(text=broken_strings())
def test_paths_on_the_command_line_with_control_characters_give_one_line(data_folder, nnback_cli, text):
    name = text.replace("\x00", "") + "!"  # no NUL: the operating system takes none in a path
    for command in (["validate", name + ".yaml"], ["predict", name, "d.csv"], ["eval", name],
                    ["diagnose", name], ["train", name + ".yaml"], ["schema", name],
                    ["validate", "cfg.yaml", "--set", f"{name}=1"]):
        one_error_line(nnback_cli(*command))


@pytest.mark.parametrize("error", [NnbackError, DataError, ConfigError])
def test_every_user_error_escapes_control_characters_once_for_all(error):
    exc = error("x\ny\u2028z\x1b[0m\tq")
    assert str(exc) == "x\\ny\\u2028z\\x1b[0m\\tq"
    assert one_line("plain ünïcode, 'quoted' \\ backslash") == "plain ünïcode, 'quoted' \\ backslash"


def test_a_config_error_keeps_one_line_per_problem_and_pickles_whole():
    import pickle

    exc = ConfigError(["a.yaml: x: bad\nvalue", "a.yaml: y: missing"])
    assert exc.messages == ["a.yaml: x: bad\\nvalue", "a.yaml: y: missing"]
    assert str(exc).splitlines() == exc.messages
    assert pickle.loads(pickle.dumps(exc)).messages == exc.messages


def test_a_data_path_too_long_for_the_file_system(data_folder, nnback_cli):
    """Found by trying: the existence check raised ENAMETOOLONG as a traceback."""
    cfg = data_folder / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_with_data({"source": "x" * 300 + ".csv"})), encoding="utf-8")
    assert one_error_line(nnback_cli("validate", cfg)).endswith(".csv: cannot read (File name too long)")


def test_training_messages_naming_a_path_stay_one_line(write_config, nnback_cli):
    cfg = write_config({"train": {"epochs": 1}})
    result = nnback_cli("train", cfg, "--out", "run\nfolder")
    assert result.returncode == 0, result.stderr
    assert "run folder run\\nfolder  (" in result.stdout
    lines = result.stdout.splitlines()  # each "YYYY-MM-DD HH:MM:SS message"
    assert all(line.split(" ", 2)[2].startswith(("run folder", "epoch", "done")) for line in lines), lines


# --- output paths the user got wrong: exit 2 (not 6, a broken disk), before any work ---------


def test_out_naming_a_file_is_a_user_error(write_config, nnback_cli, tmp_path):
    cfg = write_config()
    (tmp_path / "afile").write_text("keep")
    for out, message in [("afile", "afile: is a file, not a folder; choose another folder"),
                         ("afile/run", "afile/run: a part of this path is a file, not a folder")]:
        assert one_error_line(nnback_cli("train", cfg, "--out", out)) == f"error: {message}"
    assert (tmp_path / "afile").read_text() == "keep"


def test_output_files_in_a_missing_folder_or_on_a_folder(completed_run, nnback_cli, tmp_path):
    _, run = completed_run()
    (tmp_path / "in.csv").write_text("x0,x1\n0.1,0.2\n", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    missing = "error: missing/p.csv: no folder missing to write it in; create it first"
    assert one_error_line(nnback_cli("predict", run, "in.csv", "-o", "missing/p.csv")) == missing
    assert one_error_line(nnback_cli("predict", run, "in.csv", "-o", "folder")) == (
        "error: folder: is a folder; give a file name")
    assert one_error_line(nnback_cli("init", "missing/p.csv")) == missing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "in.csv"]


def test_set_a_key_inside_a_list_item_that_holds_a_value(data_folder, nnback_cli):
    cfg = data_folder / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_with_data({"features": ["a", "b"]})), encoding="utf-8")
    assert one_error_line(nnback_cli("validate", cfg, "--set", "data.features.0.x=1")) == (
        "error: --set data.features.0.x=1: data.features.0 is 'a', not a mapping or list")


@pytest.mark.parametrize("args, line", [
    (["train"], "Missing argument 'CONFIG' (see nnback train --help)"),
    (["trian", "x"], "No such command 'trian'. Did you mean 'train'? (see nnback --help)"),
    (["gradcheck", "cfg.yaml", "--batch", "0"],
     "Invalid value for '--batch': Input should be greater than or equal to 1 (see nnback gradcheck --help)"),
    (["train", "cfg.yaml", "--bogus"], "No such option: --bogus"),
    (["data", "fetch"], "Missing argument 'NAME' (see nnback data fetch --help)"),
])
def test_usage_errors_are_one_line_too(nnback_cli, args, line):
    assert one_error_line(nnback_cli(*args)).startswith(f"error: {line}")


@pytest.mark.parametrize("args", [["train", "cfg.yaml", "--log-format", "json", "--bogus"],
                                  ["train", "--log-format=json"]])
def test_usage_errors_are_json_lines_when_the_command_line_asks_for_json(nnback_cli, args):
    result = nnback_cli(*args)
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    event = json.loads(line)
    assert event["event"] == "error" and event["exit_code"] == 2
    assert event["message"].endswith("(see nnback train --help)")


def test_usage_errors_of_the_installed_command_and_help(nnback):
    wrong = nnback("eval", "run", "--split", "nope")
    assert one_error_line(wrong).startswith("error: Invalid value for '--split': ")
    assert wrong.stdout == ""
    bare = nnback()
    assert bare.returncode == 2 and "Commands:" in bare.stderr and "train" in bare.stderr
    helped = nnback("train", "--help")
    assert helped.returncode == 0 and "Examples:" in helped.stdout


@pytest.mark.parametrize("threshold", ["-1", "0", "nan", "inf"])
def test_gradcheck_threshold_must_be_a_positive_number(write_config, nnback_cli, threshold):
    """Found by trying: a negative or NaN threshold failed every gradient, exit 1."""
    cfg = write_config()
    assert one_error_line(nnback_cli("gradcheck", cfg, "--threshold", threshold)) == (
        f"error: --threshold {threshold}: must be a positive number, e.g. 1e-6")


def test_a_data_path_under_a_home_folder_that_does_not_exist(data_folder, nnback_cli):
    """Found by trying: ~nosuchuser/... raised from Path.expanduser as a traceback."""
    cfg = data_folder / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_with_data({"source": "~nnback-no-such-user/d.csv"})), encoding="utf-8")
    assert one_error_line(nnback_cli("validate", cfg)) == (
        "error: ~nnback-no-such-user/d.csv: no home folder for ~nnback-no-such-user on this machine")


def test_output_dir_naming_a_file_is_a_user_error(write_config, nnback_cli, tmp_path):
    (tmp_path / "afile").write_text("keep")
    cfg = write_config({"output": {"dir": "afile"}})
    line = one_error_line(nnback_cli("train", cfg))
    assert line.startswith("error: afile/tiny/")
    assert line.endswith(": a part of this path is a file, not a folder")


def test_memory_of_an_absurd_network_is_shown_in_large_units(write_config, nnback_cli):
    """Found by trying: ~298023614.3 GiB; bytes are shown up to PiB."""
    from nnback.formatting import format_bytes

    assert format_bytes(3.2e17) == "284.2 PiB" and format_bytes(3.2e14) == "291.0 TiB"
    cfg = write_config({"model": {"layers": [{"type": "linear", "units": 10**8}, "relu",
                                             {"type": "linear", "units": 10**8},
                                             {"type": "linear", "units": "auto"}]}})
    line = one_error_line(nnback_cli("validate", cfg))
    assert "PiB" in line and "GiB of memory" not in line


def test_eval_of_a_csv_for_a_model_not_trained_on_one(completed_run, nnback_cli, tmp_path):
    """Found by trying: "target: name the label column", which no option of eval can do."""
    _, run = completed_run()
    (tmp_path / "l.csv").write_text("x0,x1,y\n0.1,0.2,1\n", encoding="utf-8")
    assert one_error_line(nnback_cli("eval", run, "--data", "l.csv")) == (
        "error: l.csv: the model was not trained on a CSV file, so the label column is unknown; "
        "give an .npz file with arrays X and y")
    np.savez(tmp_path / "l.npz", X=np.array([[0.1, 0.2]]), y=np.array([1]))
    assert nnback_cli("eval", run, "--data", "l.npz").returncode == 0
