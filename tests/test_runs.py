import csv
import io
import json

import pytest
import yaml

from nnback.commands.runs import (
    abbreviate,
    find_runs,
    load_run,
    run_labels,
    runs_table,
    short_names,
    value_text,
)
from nnback.config.diff import differing_keys, flatten
from nnback.errors import NnbackError
from nnback.formatting import duration

BASE = {
    "name": "digits-mlp",
    "seed": 0,
    "model": {"layers": [{"type": "linear", "units": 64}, {"type": "relu"},
                         {"type": "linear", "units": "auto"}]},
    "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
    "train": {"epochs": 3, "batch_size": 64, "checkpoint": {"keep": 3}},
    "output": {"dir": "runs"},
}


def make_run(folder, lr=0.1, units=64, val_losses=(1.0, 0.5, 0.6), status="completed", test_acc=0.9,
             seconds=12.5, name="digits-mlp"):
    """A run folder as the trainer writes it: config.yaml, metrics.jsonl, summary.json."""
    folder.mkdir(parents=True)
    config = json.loads(json.dumps(BASE))
    config["name"] = name
    config["optimizer"]["lr"] = lr
    config["model"]["layers"][0]["units"] = units
    config["output"]["dir"] = str(folder.parent)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    records = [{"epoch": e + 1, "step": 10 * (e + 1), "train_loss": 2 * v, "val_loss": v,
                "val_accuracy": 1 - v / 2, "lr": lr / (e + 1), "seconds": 4.0 * (e + 1)}
               for e, v in enumerate(val_losses)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if status is not None:
        summary = {"name": name, "status": status, "epochs": len(records), "steps": 10 * len(records),
                   "best": {}, "final": {"test_loss": 0.3, "test_accuracy": test_acc},
                   "wall_seconds": seconds}
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture
def three_runs(tmp_path):
    make_run(tmp_path / "a" / "r1", lr=0.1, val_losses=(1.0, 0.5, 0.6), test_acc=0.91)
    make_run(tmp_path / "a" / "r2", lr=0.01, val_losses=(1.2, 0.9, 0.7), test_acc=0.85, seconds=75)
    make_run(tmp_path / "b", lr=0.3, val_losses=(2.0,), status="diverged", test_acc=None)
    return tmp_path


def test_flatten_gives_dotted_keys_and_list_indices():
    assert flatten({"a": {"b": 1, "c": [{"d": 2}, 3]}, "e": []}) == {
        "a.b": 1, "a.c[0].d": 2, "a.c[1]": 3, "e": []}


def test_differing_keys_skip_names_and_output_folders():
    other = json.loads(json.dumps(BASE))
    other["name"] = "x"
    other["output"]["dir"] = "elsewhere"
    other["train"]["checkpoint"]["keep"] = 1
    other["optimizer"]["lr"] = 0.5
    del other["seed"]
    assert differing_keys([BASE, other]) == ["optimizer.lr", "seed"]


def test_find_runs_recurses_and_load_run_reads_everything(three_runs):
    found = find_runs(three_runs)
    assert [p.relative_to(three_runs).as_posix() for p in found] == ["a/r1", "a/r2", "b"]
    run = load_run(found[0])
    assert (run.name, run.status, len(run.metrics)) == ("digits-mlp", "completed", 3)
    assert run.config["optimizer"]["lr"] == 0.1


def test_a_folder_without_config_is_not_a_run(tmp_path):
    with pytest.raises(NnbackError, match="not a run folder"):
        load_run(tmp_path)
    with pytest.raises(NnbackError, match="no such folder"):
        runs_table(tmp_path / "missing")


def test_an_unreadable_saved_config_is_one_error_line(tmp_path):
    (tmp_path / "config.yaml").write_text("name: [\n")
    with pytest.raises(NnbackError) as error:
        load_run(tmp_path)
    assert str(error.value).startswith(f"{tmp_path / 'config.yaml'}: line 2, column 1: YAML syntax error")
    assert "\n" not in str(error.value)


def test_run_labels_name_the_differing_hyperparameters(tmp_path):
    runs = [load_run(make_run(tmp_path / str(i), lr=lr)) for i, lr in enumerate((0.1, 0.01))]
    assert run_labels(runs) == ["digits-mlp (lr=0.1)", "digits-mlp (lr=0.01)"]
    twins = [load_run(make_run(tmp_path / name)) for name in ("t1", "t2")]
    assert run_labels(twins) == ["digits-mlp [t1]", "digits-mlp [t2]"]


def test_table_shows_differing_keys_best_metric_and_its_epoch(three_runs):
    lines = runs_table(three_runs).splitlines()
    assert lines[0] == f"digits-mlp: 3 runs in {three_runs}"
    assert lines[1].split() == ["run", "status", "lr", "best_val_loss", "best_val_accuracy",
                                "best_epoch", "test_accuracy", "epochs", "seconds"]
    assert lines[2].split() == ["a/r1", "completed", "0.1", "0.5", "0.75", "2", "0.91", "3", "12.5s"]
    assert lines[3].split() == ["a/r2", "completed", "0.01", "0.7", "0.65", "3", "0.85", "3", "1m15s"]
    assert lines[4].split() == ["b", "diverged", "0.3", "2", "0", "1", "-", "1", "12.5s"]


def edit_config(run, edit):
    """Change a run's saved config.yaml in place."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    edit(config)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run


def other_experiment(config):
    """A config of another experiment: other data, model, schedule and training."""
    config["data"] = {"source": "spiral", "classes": 3, "points_per_class": 100, "noise": 0.2,
                      "split": {"val": 0.2, "test": 0.0}, "preprocess": {"type": "none"}}
    config["model"]["layers"] = [{"type": "linear", "units": 8, "init": "xavier_normal"},
                                 {"type": "tanh"}, {"type": "dropout", "p": 0.1},
                                 {"type": "linear", "units": "auto"}]
    config["train"].update(epochs=300, batch_size=300, eval_every=100)
    config["schedule"] = {"type": "cosine", "warmup_epochs": 10, "min_lr": 0.0}


@pytest.fixture
def two_experiments(tmp_path):
    """digits-mlp: two runs differing in lr; spiral: two runs differing in hidden units."""
    for i, lr in enumerate((0.1, 0.01)):
        make_run(tmp_path / "digits-mlp" / f"run{i}", lr=lr)
    for i, units in enumerate((8, 64)):
        run = make_run(tmp_path / "spiral" / f"run{i}", name="spiral", val_losses=(0.9, 0.3))
        edit_config(run, other_experiment)
        edit_config(run, lambda c, units=units: c["model"]["layers"][0].update(units=units))
    return tmp_path


def test_runs_of_several_experiments_are_compared_within_each(two_experiments):
    blocks = runs_table(two_experiments).split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [
        f"digits-mlp: 2 runs in {two_experiments / 'digits-mlp'}",
        f"spiral: 2 runs in {two_experiments / 'spiral'}"]
    digits, spiral = ([line.split() for line in b.splitlines()[1:]] for b in blocks)
    assert digits[0] == ["run", "status", "lr", "best_val_loss", "best_val_accuracy", "best_epoch",
                         "test_accuracy", "epochs", "seconds"]
    assert digits[1][:3] == ["run0", "completed", "0.1"] and digits[2][:3] == ["run1", "completed", "0.01"]
    assert spiral[0][:3] == ["run", "status", "units"]
    assert [row[2] for row in spiral[1:]] == ["8", "64"]
    rows = json.loads(runs_table(two_experiments, fmt="json"))
    assert [(r["name"], r.get("optimizer.lr"), r.get("model.layers[0].units")) for r in rows] == [
        ("digits-mlp", 0.1, None), ("digits-mlp", 0.01, None), ("spiral", None, 8), ("spiral", None, 64)]
    header = next(csv.reader(io.StringIO(runs_table(two_experiments, fmt="csv"))))
    assert header[:5] == ["run", "name", "status", "optimizer.lr", "model.layers[0].units"]


LONG_PATH = "data/" + "very-long-folder-name/" * 4 + "table.csv"


def far_apart(config):
    """Another experiment under the same name, and a data file with a long path."""
    other_experiment(config)
    config["data"] = {"source": LONG_PATH, "target": "label"}
    config["optimizer"].update(lr=0.123456789, momentum=0.5, nesterov=True, weight_decay=1e-4)


def test_many_differing_settings_and_long_values_stay_readable(tmp_path):
    make_run(tmp_path / "a", val_losses=(0.5,))
    edit_config(make_run(tmp_path / "b", val_losses=(0.5,)), far_apart)
    lines = runs_table(tmp_path).splitlines()
    assert max(map(len, lines)) < 200
    assert lines[1].split()[:8] == ["run", "status", "lr", "momentum", "nesterov", "weight_decay", "min_lr",
                                    "schedule.type"]
    assert lines[-1] == ("(7 more differing settings not shown: schedule.warmup_epochs, model.layers, "
                         "train.batch_size, train.epochs, train.eva…; --format json lists them all)")
    assert lines[3].split()[:8] == ["b", "completed", "0.1235", "0.5", "true", "0.0001", "0", "cosine"]
    (row_b,) = [r for r in json.loads(runs_table(tmp_path, fmt="json")) if r["run"] == "b"]
    assert row_b["data.source"] == LONG_PATH and row_b["model.layers"][2] == {"type": "dropout", "p": 0.1}
    assert abbreviate(LONG_PATH, 24) == "…" + LONG_PATH[-23:]
    assert abbreviate("[1, 2, 3, 4]", 8) == "[1, 2, …"
    assert value_text(row_b["model.layers"]) == (
        "[linear(units=8, init=xavier_normal), tanh, dropout(p=0.1), linear(units=auto)]")


def test_sort_within_each_experiment_by_a_short_setting_name(two_experiments):
    rows = json.loads(runs_table(two_experiments, sort="lr", fmt="json"))
    assert [r["run"] for r in rows] == [
        "digits-mlp/run1", "digits-mlp/run0", "spiral/run0", "spiral/run1"]  # spiral has no lr column
    rows = json.loads(runs_table(two_experiments, sort="units", fmt="json"))
    assert [r["run"] for r in rows][2:] == ["spiral/run0", "spiral/run1"]


def test_legend_labels_are_per_experiment_and_short(two_experiments, tmp_path):
    runs = [load_run(p) for p in find_runs(two_experiments)]
    assert run_labels(runs) == ["digits-mlp (lr=0.1)", "digits-mlp (lr=0.01)",
                                "spiral (units=8)", "spiral (units=64)"]
    far = [load_run(make_run(tmp_path / "far" / "a")),
           load_run(edit_config(make_run(tmp_path / "far" / "b"), far_apart))]
    labels = run_labels(far)
    assert labels == ["digits-mlp (lr=0.1, momentum=0.9, nesterov=-, +10 more)",
                      "digits-mlp (lr=0.1235, momentum=0.5, nesterov=true, +10 more)"]


def test_sort_by_best_validation_and_filter_by_status(three_runs):
    rows = json.loads(runs_table(three_runs, sort="val_accuracy", fmt="json"))
    assert [r["run"] for r in rows] == ["a/r1", "a/r2", "b"]
    rows = json.loads(runs_table(three_runs, sort="val_loss", fmt="json"))
    assert [(r["run"], r["best_val_loss"]) for r in rows] == [("a/r1", 0.5), ("a/r2", 0.7), ("b", 2.0)]
    rows = json.loads(runs_table(three_runs, sort="optimizer.lr", fmt="json"))
    assert [r["optimizer.lr"] for r in rows] == [0.01, 0.1, 0.3]
    rows = json.loads(runs_table(three_runs, status="diverged,interrupted", fmt="json"))
    assert [r["run"] for r in rows] == ["b"]
    assert runs_table(three_runs, status="failed") == f"no runs under {three_runs}"


def test_csv_format_is_parseable(three_runs):
    rows = list(csv.DictReader(io.StringIO(runs_table(three_runs, fmt="csv"))))
    assert [r["run"] for r in rows] == ["a/r1", "a/r2", "b"]
    assert rows[1]["seconds"] == "75"
    assert rows[2]["test_accuracy"] == ""


def test_runs_without_summary_are_incomplete_and_use_the_log(tmp_path):
    make_run(tmp_path / "live", status=None)
    (row,) = json.loads(runs_table(tmp_path, fmt="json"))
    assert (row["status"], row["epochs"], row["seconds"]) == ("incomplete", 3, 12.0)


def test_early_stopping_metric_is_the_one_ranked(tmp_path):
    for name, losses in (("x", (0.9, 0.4)), ("y", (0.8, 0.7))):
        run = make_run(tmp_path / name, val_losses=losses)
        summary = json.loads((run / "summary.json").read_text())
        summary["best"] = {"val_loss": min(losses)}
        (run / "summary.json").write_text(json.dumps(summary))
    rows = json.loads(runs_table(tmp_path, sort="val_loss", fmt="json"))
    assert [(r["run"], r["best_val_loss"], r["best_epoch"]) for r in rows] == [("x", 0.4, 2), ("y", 0.7, 2)]
    assert list(rows[0])[-6:-4] == ["best_val_accuracy", "best_val_loss"]  # the ranked one next to its epoch


@pytest.mark.parametrize("kwargs, message", [
    ({"sort": "speed"}, "--sort speed: no such column"),
    ({"status": "done"}, "--status done: choose from"),
    ({"fmt": "xml"}, "--format xml: choose one of table, csv, json"),
])
def test_bad_options_name_the_choices(three_runs, kwargs, message):
    with pytest.raises(NnbackError, match=message):
        runs_table(three_runs, **kwargs)


def test_duration_formats():
    assert [duration(s) for s in (3.25, 65, 3725)] == ["3.2s", "1m05s", "1h02m"]


def test_a_differing_setting_never_shares_its_header_with_a_result_column(tmp_path):
    """Found by trying: runs differing in train.epochs showed two columns named epochs."""
    for folder, epochs in (("short", 3), ("long", 100)):
        run = make_run(tmp_path / folder)
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["train"]["epochs"] = epochs
        (run / "config.yaml").write_text(yaml.safe_dump(config))
    header = runs_table(tmp_path).splitlines()[1].split()
    assert header.count("epochs") == 1 and "train.epochs" in header
    assert short_names(["train.epochs", "optimizer.lr"], taken=["epochs"]) == ["train.epochs", "lr"]


def test_a_name_or_value_with_control_characters_keeps_every_row_one_line(tmp_path):
    """Runs saved under names new runs may not have (a newline, an ANSI escape) are listed
    with the characters escaped."""
    make_run(tmp_path / "r1", name="my\nrun\x1b[31m", lr=0.1)
    make_run(tmp_path / "r2", name="my\nrun\x1b[31m", lr=0.2, units=32)
    config = yaml.safe_load((tmp_path / "r2" / "config.yaml").read_text())
    config["model"]["layers"][0]["units"] = "a\u2028b"
    (tmp_path / "r2" / "config.yaml").write_text(yaml.safe_dump(config))
    text = runs_table(tmp_path)
    lines = text.split("\n")
    assert lines[0] == f"my\\nrun\\x1b[31m: 2 runs in {tmp_path}"
    assert len(lines) == 4 and all(line.isprintable() for line in lines)
    assert "a\\u2028b" in lines[3]
