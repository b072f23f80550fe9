"""Files written by an earlier nnback still work, and files of a newer format are refused.

``tests/data/runs-d3af66a`` holds two runs written by nnback 0.1.0 at commit d3af66a
(before the run-folder code moved to ``nnback/runfolder/``), each stopped part-way by
its time budget, with what that version made of them: the predictions and metrics of
the stopped and the resumed run, and the final weights of resuming a copy to the end
(its README says how they were made). Today's code must give the same numbers.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import nnback
from nnback.cli import app
from nnback.commands.evaluate import eval_saved
from nnback.commands.predict import predict_file
from nnback.errors import CheckpointError
from nnback.runfolder.atomic import atomic_save_npz
from nnback.runfolder.checkpoint import (
    FORMAT_VERSION,
    META_KEY,
    VERSION_KEY,
    CheckpointStore,
    load_checkpoint,
    save_checkpoint,
)

OLD = Path(__file__).parent / "data" / "runs-d3af66a"
RUNS = ("adam-bn", "sgd")
INPUTS = OLD / "inputs.csv"
STEPS_PER_EPOCH = 4  # 54 training samples in batches of 16


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def npz_arrays(path: Path) -> dict:
    """Every array of an .npz file but its metadata."""
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files if name != META_KEY}


def raw_meta(path: Path) -> dict:
    """The metadata of a checkpoint as stored, format version and checksum included."""
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(npz[META_KEY].item())


def metrics(run: Path) -> list[dict]:
    timing = ("seconds", "samples_per_second")
    return [{k: v for k, v in json.loads(line).items() if k not in timing}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def expected_proba(csv_path: Path) -> tuple[list[str], np.ndarray]:
    """Predicted labels and class probabilities from a ``nnback predict`` CSV."""
    rows = [line.split(",") for line in csv_path.read_text().splitlines()[1:]]
    return [row[0] for row in rows], np.array([[float(p) for p in row[1:]] for row in rows])


# --- the test data is what it claims to be --------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_the_old_runs_stopped_part_way_into_an_epoch(run):
    summary = json.loads((OLD / run / "stopped" / "summary.json").read_text())
    config = yaml.safe_load((OLD / run / "stopped" / "config.yaml").read_text())
    assert summary["status"] == "time_limit"
    assert summary["versions"]["nnback"] == "0.1.0"
    assert 0 < summary["epochs"] < config["train"]["epochs"]
    assert summary["steps"] % STEPS_PER_EPOCH != 0  # inside an epoch: the position is resumed too
    for checkpoint in (OLD / run / "stopped" / "checkpoints").iterdir():
        assert VERSION_KEY not in raw_meta(checkpoint)
    assert VERSION_KEY not in raw_meta(OLD / run / "resumed" / "model.npz")


def test_the_old_adam_config_holds_a_null_weight_decay_and_batchnorm_statistics():
    config = yaml.safe_load((OLD / "adam-bn" / "stopped" / "config.yaml").read_text())
    assert config["optimizer"]["weight_decay"] is None
    arrays = npz_arrays(OLD / "adam-bn" / "stopped" / "checkpoints" / "last.npz")
    assert any(name.endswith("running_var") for name in arrays)
    assert any(name.endswith("exp_avg_sq") for name in arrays)


# --- load, predict, eval ----------------------------------------------------------------

# The weights file each expected output was made from, and a folder that resolves to it.
WEIGHTS = {"best": ("stopped/checkpoints/best.npz", "stopped"),
           "last": ("stopped/checkpoints/last.npz", None),
           "final": ("resumed/model.npz", "resumed")}


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("weights", WEIGHTS)
def test_predict_gives_what_the_old_version_gave(run, weights):
    expected = (OLD / run / f"predict-{weights}.csv").read_text()
    for path in filter(None, WEIGHTS[weights]):
        assert predict_file(OLD / run / path, INPUTS) == expected, path


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("weights", WEIGHTS)
def test_nnback_load_reads_old_checkpoints_and_models(run, weights):
    labels, proba = expected_proba(OLD / run / f"predict-{weights}.csv")
    predictor = nnback.load(OLD / run / WEIGHTS[weights][0])
    X = np.loadtxt(INPUTS, delimiter=",", skiprows=1)
    assert [str(label) for label in predictor.predict(X)] == labels
    np.testing.assert_allclose(predictor.predict_proba(X), proba, rtol=1e-5)  # CSV: 6 digits


def old_metrics(metrics: dict, run: str) -> dict:
    """The metrics of ``nnback eval`` that the old version reported, and what it reported."""
    expected = json.loads((OLD / run / "eval-final.json").read_text())
    return {k: metrics[k] for k in expected}, expected


@pytest.mark.parametrize("run", RUNS)
def test_eval_gives_what_the_old_version_gave(run):
    metrics, expected = old_metrics(eval_saved(OLD / run / "resumed", "test"), run)
    assert metrics == pytest.approx(expected, rel=1e-9)


def test_the_commands_read_an_old_run_folder():
    predicted = invoke("predict", OLD / "sgd" / "resumed", INPUTS)
    assert predicted.exit_code == 0, predicted.output
    assert predicted.stdout == (OLD / "sgd" / "predict-final.csv").read_text()
    evaluated = invoke("eval", OLD / "adam-bn" / "resumed", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    metrics, expected = old_metrics(json.loads(evaluated.stdout), "adam-bn")
    assert metrics == pytest.approx(expected, rel=1e-9)


# --- resume -------------------------------------------------------------------------------


@pytest.mark.parametrize(("run", "config"), [
    ("adam-bn", "adam-bn.yaml"),  # weight_decay left out: today's 0.0 against the saved null
    ("sgd", "run/config.yaml"),  # the run's own saved config
    ("spaced-name", "spaced-name.yaml"),  # named as new runs may no longer be
    ("spaced-name", "run/config.yaml"),
])
def test_resume_ends_where_the_old_version_ended(run, config, tmp_path):
    shutil.copytree(OLD / run / "stopped", tmp_path / "run")
    shutil.copy(OLD / f"{run}.yaml", tmp_path)
    result = invoke("train", tmp_path / config, "--out", tmp_path / "run", "--resume", "-q")
    assert result.exit_code == 0, result.output
    resumed, expected = tmp_path / "run", OLD / run / "resumed"
    final, old_final = npz_arrays(resumed / "model.npz"), npz_arrays(expected / "model.npz")
    assert sorted(final) == sorted(old_final)
    for name, array in old_final.items():
        np.testing.assert_array_equal(final[name], array, err_msg=name)
    assert metrics(resumed) == metrics(expected)
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in (resumed, expected)]
    for key in ("status", "epochs", "steps", "best_epoch", "best", "final"):
        assert summaries[0][key] == summaries[1][key], key


# --- a name new runs may no longer have ------------------------------------------------------

SPACED = OLD / "spaced-name"


def test_a_new_run_named_as_the_old_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("train", OLD / "spaced-name.yaml")
    assert result.exit_code == 2
    assert result.stderr == (f"error: {OLD / 'spaced-name.yaml'}: name: must be one plain folder name: "
                             "letters, digits and - _ . + = , @, starting with a letter or digit, at most "
                             "100 characters (got 'my spiral (v1)'); the run folder is named after it\n")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("path", ["resumed", "resumed/model.npz"])
def test_a_run_saved_under_a_name_new_runs_may_not_have_still_loads(path):
    expected = (SPACED / "predict-final.csv").read_text()
    labels, proba = expected_proba(SPACED / "predict-final.csv")
    predictor = nnback.load(SPACED / path)
    assert predictor.exp.name == "my spiral (v1)"
    X = np.loadtxt(INPUTS, delimiter=",", skiprows=1)
    assert [str(label) for label in predictor.predict(X)] == labels
    np.testing.assert_allclose(predictor.predict_proba(X), proba, rtol=1e-5)
    predicted = invoke("predict", SPACED / path, INPUTS)
    assert (predicted.exit_code, predicted.stdout) == (0, expected)
    evaluated = invoke("eval", SPACED / path, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["samples"] == 18


def test_runs_and_a_checkpoint_of_a_run_under_an_old_style_name_are_read():
    listed = invoke("runs", SPACED)
    assert listed.exit_code == 0, listed.output
    assert "my spiral (v1)" in listed.stdout and "time_limit" in listed.stdout
    assert invoke("predict", SPACED / "stopped", INPUTS).exit_code == 0


# --- format versions ------------------------------------------------------------------------


def with_meta(source: Path, target: Path, **changes) -> Path:
    """Copy a checkpoint with keys of its stored metadata changed (the checksum covers
    the arrays only, so the copy still verifies)."""
    meta = {**raw_meta(source), **changes}
    atomic_save_npz(target, {**npz_arrays(source), META_KEY: np.array(json.dumps(meta))})
    return target


def test_new_files_record_their_format_version_and_old_files_read_as_version_1(tmp_path):
    arrays, meta = load_checkpoint(OLD / "sgd" / "stopped" / "checkpoints" / "last.npz")
    save_checkpoint(tmp_path / "c.npz", arrays, meta)
    assert raw_meta(tmp_path / "c.npz")[VERSION_KEY] == FORMAT_VERSION == 1
    assert load_checkpoint(tmp_path / "c.npz")[1] == meta
    with pytest.raises(ValueError, match="'format_version' is reserved"):
        save_checkpoint(tmp_path / "d.npz", arrays, {**meta, VERSION_KEY: 1})


def test_a_newer_format_version_is_refused_in_one_line(tmp_path):
    newer = with_meta(OLD / "sgd" / "resumed" / "model.npz", tmp_path / "model.npz",
                      **{VERSION_KEY: FORMAT_VERSION + 1})
    message = (f"{newer}: written by a newer nnback (format version {FORMAT_VERSION + 1}; "
               f"this version reads up to {FORMAT_VERSION}): upgrade nnback to use it")
    with pytest.raises(CheckpointError) as caught:
        nnback.load(newer)
    assert str(caught.value) == message
    for command in (["predict", newer, INPUTS], ["eval", newer]):
        result = invoke(*command)
        assert (result.exit_code, result.stderr) == (2, f"error: {message}\n")


@pytest.mark.parametrize("version", ["2", 0, True, None])
def test_an_invalid_format_version_is_a_damaged_file(tmp_path, version):
    bad = with_meta(OLD / "sgd" / "resumed" / "model.npz", tmp_path / "model.npz", **{VERSION_KEY: version})
    with pytest.raises(CheckpointError, match=f"{bad}: invalid 'format_version' .* \\(file corrupted\\)"):
        load_checkpoint(bad)


def test_resume_refuses_a_newer_checkpoint_rather_than_fall_back_to_an_older_one(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(OLD / "sgd" / "stopped", run)
    last = run / "checkpoints" / "last.npz"
    older = shutil.copy(last, CheckpointStore(run).step_path(1000))
    with_meta(older, last, **{VERSION_KEY: FORMAT_VERSION + 1})
    before = {path.name: path.read_bytes() for path in (run / "checkpoints").iterdir()}
    result = invoke("train", run / "config.yaml", "--out", run, "--resume")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and f"{last}: written by a newer nnback" in result.stderr
    assert {path.name: path.read_bytes() for path in (run / "checkpoints").iterdir()} == before
