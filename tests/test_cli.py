"""The ``nnback`` command: help, validate, gradcheck, console formats and the run folder."""

import datetime
import json
import re
import types
from pathlib import Path

import numpy as np
import pytest
import typer
import yaml
from typer.testing import CliRunner

import nnback.train.run as run_module
from nnback.cli import app
from nnback.config import load_config
from nnback.layers.activations import ReLU

REPO = Path(__file__).parent.parent

TINY = {
    "name": "tiny",
    "seed": 3,
    "data": {"source": "spiral", "classes": 3, "points_per_class": 30, "split": {"val": 0.2}},
    "model": {"layers": [
        {"type": "linear", "units": 16}, "relu", {"type": "dropout", "p": 0.1},
        {"type": "linear", "units": "auto"},
    ]},
    "loss": "softmax_cross_entropy",
    "optimizer": {"type": "sgd", "lr": 0.5, "momentum": 0.9},
    "schedule": {"type": "cosine", "warmup_epochs": 1},
    "train": {"epochs": 4, "batch_size": 16},
    "output": {"dir": "out"},
}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A tiny experiment file in a temporary working folder."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.mark.parametrize("command, options", [
    ([], ["train", "validate", "eval", "predict", "gradcheck", "runs", "plot", "diagnose", "explain",
          "schema", "init", "sweep", "data"]),
    (["train"], ["--set", "--out", "--resume", "--force", "--max-time", "--skip-if-done", "--threads",
                 "--quiet", "--log-format"]),
    (["validate"], ["CONFIG", "--set"]),
    (["eval"], ["RUN", "--split", "--data", "--format", "--json"]),
    (["predict"], ["RUN", "INPUT", "--out"]),
    (["gradcheck"], ["CONFIG", "--set", "--batch", "--threshold"]),
    (["data", "fetch"], ["NAME", "--dir"]),
    (["sweep"], ["SWEEP", "--workers", "--scheduler", "--out", "--set", "--max-trials", "--max-time",
                 "--retry-failed", "--fail-fast", "--force", "--dry-run"]),
])
def test_help(command, options):
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    for option in options:
        assert option in result.stdout


def command_paths(group, prefix=()) -> list[list[str]]:
    """Every command below ``group`` as its words, e.g. ["data", "fetch"]."""
    paths = []
    for name, command in group.commands.items():
        words = [*prefix, name]
        paths += command_paths(command, words) if hasattr(command, "commands") else [words]
    return paths


COMMANDS = [[], *command_paths(typer.main.get_command(app))]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "nnback")
def test_help_shows_examples_and_flags_without_a_type(command):
    text = invoke(*command, "--help").stdout
    assert "<bool>" not in text
    examples = text[text.index("Examples:"):].splitlines()[1:]
    lines = [line.strip() for line in examples if line.strip()]
    assert lines and all(line.startswith(" ".join(["nnback", *command])) for line in lines)


def test_data_help_names_only_what_it_does():
    text = invoke("data", "--help").stdout
    assert "Download MNIST or Fashion-MNIST (not shipped)." in text
    assert "inspect" not in text


def test_version():
    from importlib.metadata import version

    import nnback

    result = invoke("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"nnback {nnback.__version__}\n"
    assert version("nnback") == nnback.__version__  # the package metadata agrees


def test_validate_prints_config_and_layer_table(monkeypatch):
    monkeypatch.chdir(REPO)
    result = invoke("validate", "config/digits-mlp.yaml")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert yaml.safe_load("\n".join(lines[:lines.index("")])) == load_config(
        "config/digits-mlp.yaml").model_dump(mode="json")
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines if re.match(r"(input|\d+ )", line)]
    assert rows == [
        ["input", "(N, 64)", "0", "16.0 KiB"],  # a batch of 64 in float32
        ["0 Linear(64, 128)", "(N, 128)", "8,320", "64.0 KiB"],  # the output and its gradient
        ["1 ReLU()", "(N, 128)", "0", "96.0 KiB"],  # and the zeros it compares with
        ["2 Dropout(p=0.1)", "(N, 128)", "0", "64.0 KiB"],
        ["3 Linear(128, 10)", "(N, 10)", "1,290", "5.0 KiB"],
    ]
    assert "total parameters: 9,610 (37.5 KiB of float32)" in result.stdout
    assert "data: classification, 64 features, 10 classes, train 1259, val 269, test 269" in result.stdout
    assert lines[-1] == "config/digits-mlp.yaml: valid"


def test_validate_applies_overrides(tiny):
    result = invoke("validate", tiny, "--set", "model.layers.0.units=5")
    assert result.exit_code == 0, result.output
    assert re.search(r"^0 Linear\(2, 5\)\s+\(N, 5\)\s+15\s+\d", result.stdout, re.MULTILINE)


@pytest.mark.parametrize("config", ["digits-mlp", "spiral-hidden", "spiral-linear"])
def test_gradcheck_passes_on_shipped_configs(monkeypatch, config):
    monkeypatch.chdir(REPO)
    result = invoke("gradcheck", f"config/{config}.yaml", "--batch", "4")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["gradient", "rel.", "error", "result"]
    assert all(line.split()[-1] == "ok" for line in lines[1:-1])
    assert lines[-1].endswith("threshold 1e-06: passed")


def test_gradcheck_fails_on_a_broken_layer(monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(ReLU, "backward", lambda self, dout: dout.copy())  # no mask
    result = invoke("gradcheck", "config/spiral-hidden.yaml", "--batch", "4")
    assert result.exit_code == 1
    table = {line.split()[0]: line.split()[-1] for line in result.stdout.splitlines()[1:-1]}
    assert table["0.W"] == "FAIL" and table["2.W"] == "ok"
    assert result.stdout.splitlines()[-1].endswith("FAILED")


def test_train_text_lines_without_progress_bar(tiny):
    result = invoke("train", tiny, "--out", "run")
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stdout and "\033" not in result.stdout
    for line in result.stdout.splitlines():  # each line starts with the local time
        datetime.datetime.strptime(line[:20], "%Y-%m-%d %H:%M:%S ")
    lines = [line[20:] for line in result.stdout.splitlines()]
    assert lines[0].startswith("run folder run  (")
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 4
    pattern = (r"epoch \d/4 train_loss \d\.\d{4} val_loss \d\.\d{4} val_acc \d\.\d{4} "
               r"lr \d\.\de[-+]\d\d \d+\.\ds")
    assert all(re.fullmatch(pattern, line) for line in epochs), epochs
    assert lines[-1].startswith("done: train_loss ")


def test_progress_bar_only_on_a_terminal():
    from nnback.train.console import Console

    class Terminal:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, text):
            self.text += text

        def flush(self):
            pass

    term = Terminal()
    console = Console("text", stream=term)
    console.progress(1, 3, 5, 10, 0.5)
    console.info("done")
    assert console.live
    assert re.fullmatch(r"\repoch 1/3 \[#{12}-{12}\] 5/10 loss 0.5000\r\033\[K"
                        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d done\n", term.text)
    assert not Console("json", stream=Terminal()).live


def test_train_json_log_format(tiny):
    result = invoke("train", tiny, "--out", "run", "--log-format", "json")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events] == ["info"] + ["eval"] * 4 + ["info"]
    assert all(datetime.datetime.fromisoformat(e["time"]).tzinfo is not None for e in events)
    metrics = [json.loads(line) for line in Path("run/metrics.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in e.items() if k not in ("event", "time")} for e in events[1:-1]] == metrics


def test_train_errors_in_json_log_format_are_json(tiny):
    assert invoke("train", tiny, "--out", "run", "-q").exit_code == 0
    result = invoke("train", tiny, "--out", "run", "--log-format", "json")
    assert result.exit_code == 2
    [error] = [json.loads(line) for line in result.stderr.splitlines()]
    assert (error["event"], error["exit_code"]) == ("error", 2)
    assert error["message"].startswith("run: already holds a run; add --resume")


def test_train_quiet_prints_nothing(tiny):
    result = invoke("train", tiny, "--out", "run", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr == ""
    assert json.loads(Path("run/summary.json").read_text())["status"] == "completed"


def test_run_folder_contents(tiny):
    result = invoke("train", tiny, "--out", "run", "--set", "optimizer.lr=0.3", "-q")
    assert result.exit_code == 0, result.output
    run = Path("run")
    assert {p.name for p in run.iterdir()} >= {
        "checkpoints", "config.yaml", "metrics.jsonl", "model.npz", "summary.json"}
    saved = load_config(run / "config.yaml")
    assert saved == load_config(tiny, ["optimizer.lr=0.3"])
    assert saved.optimizer.lr == 0.3

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps_per_epoch = -(-72 // 16)  # 90 points, 20% held out for validation
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert [r["step"] for r in records] == [steps_per_epoch * e for e in (1, 2, 3, 4)]
    for record in records:
        assert set(record) == {"epoch", "step", "train_loss", "val_loss", "val_accuracy", "lr",
                               "seconds", "samples_per_second"}
        assert 0 <= record["val_accuracy"] <= 1 and record["samples_per_second"] > 0

    assert (run / "checkpoints" / "last.npz").is_file()
    with np.load(run / "checkpoints" / "last.npz", allow_pickle=False) as last:
        assert any(name.startswith("optim/") for name in last.files)
        assert json.loads(str(last["meta"]))["progress"]["step"] == records[-1]["step"]
    with np.load(run / "model.npz", allow_pickle=False) as model:
        assert {"model/0.W", "model/0.b", "model/3.W", "model/3.b", "prep/shift"} <= set(model.files)

    summary = json.loads((run / "summary.json").read_text())
    assert {"status", "exit_code", "epochs", "steps", "best_epoch", "best", "final", "wall_seconds",
            "samples_per_second", "versions"} <= set(summary)
    assert (summary["status"], summary["exit_code"], summary["epochs"]) == ("completed", 0, 4)
    assert summary["steps"] == records[-1]["step"]
    assert set(summary["final"]) == {"train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    assert summary["versions"]["numpy"] == np.__version__


def test_early_stopped_run_keeps_the_best_weights(tiny):
    result = invoke("train", tiny, "--out", "run", "-q", "--set", "train.epochs=30",
                    "--set", "optimizer.lr=5", "--set", "train.early_stopping={patience: 2}")
    assert result.exit_code == 0, result.output
    summary = json.loads(Path("run/summary.json").read_text())
    records = [json.loads(line) for line in Path("run/metrics.jsonl").read_text().splitlines()]
    best = min(records, key=lambda r: r["val_loss"])
    assert summary["status"] == "early_stopped"
    assert summary["epochs"] == len(records) < 30
    assert summary["best_epoch"] == best["epoch"]
    assert summary["best"] == {"val_loss": best["val_loss"]}
    assert summary["final"]["val_loss"] == pytest.approx(best["val_loss"], rel=1e-6)
    with np.load("run/checkpoints/best.npz", allow_pickle=False) as saved:
        assert json.loads(str(saved["meta"]))["progress"]["step"] == best["step"]


def test_default_run_folders_are_never_reused(tiny, monkeypatch):
    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 2, 3, 4, 5, tzinfo=tz)

    monkeypatch.setattr(run_module, "datetime",
                        types.SimpleNamespace(datetime=Frozen, timezone=datetime.timezone))
    for _ in range(2):
        result = invoke("train", tiny, "--set", "train.epochs=1", "--set", "schedule=constant", "-q")
        assert result.exit_code == 0, result.output
    folders = sorted(p.name for p in Path("out/tiny").iterdir())
    assert folders == ["20260102-030405", "20260102-030405-1"]
    assert all((Path("out/tiny") / f / "model.npz").is_file() for f in folders)


def test_out_folder_with_a_run_needs_resume(tiny):
    assert invoke("train", tiny, "--out", "run", "-q").exit_code == 0
    result = invoke("train", tiny, "--out", "run", "-q")
    assert result.exit_code == 2
    assert result.stderr == ("error: run: already holds a run; add --resume to continue it, "
                             "or choose another --out\n")


def test_eval_and_predict_errors(tiny):
    result = invoke("eval", "nowhere")
    assert (result.exit_code, result.stderr) == (2, "error: nowhere: no such run folder or weights file\n")
    assert invoke("train", tiny, "--out", "run", "-q").exit_code == 0
    result = invoke("predict", "run", "missing.csv")
    assert result.exit_code == 2 and result.stderr.startswith("error: missing.csv: ")
    np.save("wide.npy", np.zeros((2, 5)))
    result = invoke("predict", "run", "wide.npy")
    assert result.exit_code == 2
    assert result.stderr == "error: wide.npy: 5 features per row, but the model was trained on 2\n"
    Path("labelled.csv").write_text("x0,x1,label\n1,2,a\n")  # found by trying: 'a' is not a number
    result = invoke("predict", "run", "labelled.csv")
    assert result.exit_code == 2
    assert result.stderr == ("error: labelled.csv: 3 feature columns (x0, x1, label), but the model was "
                             "trained on 2\n")
    result = invoke("eval", "run", "--split", "test")
    assert result.exit_code == 2
    assert result.stderr == "error: run: the run's data has no test split (see data.split)\n"
