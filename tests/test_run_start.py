"""What ``nnback train`` checks before its first step, and which folders it starts in:
configs that cannot train fail in ``validate`` and ``train`` before a run folder exists;
a folder whose run never took a step does not block a rerun; files of another run and
symbolic links are never mixed into a run; several copies started at once on one
folder leave exactly one training.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from nnback.cli import app
from nnback.config import load_config
from nnback.data import load_data
from nnback.errors import EXIT_LOCKED, EXIT_USAGE
from nnback.runfolder.jsonl import read_jsonl
from nnback.train.console import Console
from nnback.train.trainer import Trainer

BATCHNORM = {"model": {"layers": [{"type": "linear", "units": 8}, "batchnorm", "relu",
                                  {"type": "linear", "units": "auto"}]}}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def error_line(result, code: int = EXIT_USAGE) -> str:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    [line] = result.stderr.splitlines()
    return line


@pytest.mark.parametrize("changes, message", [
    ({**BATCHNORM, "train": {"batch_size": 1}},
     "train.batch_size: batches of 1 sample have no batch statistics for batchnorm (model.layers[1])"),
    ({"model": {"layers": [{"type": "linear", "units": 10 ** 10}, "relu",
                           {"type": "linear", "units": "auto"}]}},
     "model.layers[0].units: training needs ~"),
    ({"data": {"points_per_class": 10 ** 9}},
     "data: does not fit in the memory left"),
])
def test_a_config_that_cannot_train_fails_in_validate_and_before_the_run_folder(
        write_config, tmp_path, monkeypatch, changes, message):
    if "data" in changes:  # a data set too large for memory, without allocating it
        def too_large(*args, **kwargs):
            raise MemoryError

        monkeypatch.setattr("nnback.train.plan.load_data", too_large)
    cfg = write_config(changes)
    assert message in error_line(invoke("validate", cfg))
    run = tmp_path / "run"
    assert message in error_line(invoke("train", cfg, "--out", run))
    assert not run.exists()


def test_a_batch_larger_than_the_data_takes_all_rows_without_a_buffer_of_its_size(write_config, tmp_path):
    cfg = write_config({**BATCHNORM, "train": {"batch_size": 10 ** 9, "epochs": 2}})
    exp = load_config(cfg)
    trainer = Trainer(exp, load_data(exp.data, seed=exp.seed, base_dir=tmp_path), Console("quiet"), str(cfg))
    (tmp_path / "run").mkdir()
    trainer.open(tmp_path / "run")
    assert trainer.fit() == "completed"
    assert trainer._gathered_x.shape == (120, 2)
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [1, 2]


def test_a_folder_whose_run_never_took_a_step_does_not_block_a_rerun(write_config, tmp_path):
    """What a run that failed at its start leaves: config.yaml, empty logs, no checkpoint."""
    cfg = write_config()
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("name: something else\n")
    (run / "metrics.jsonl").write_text("")
    (run / "diagnostics.jsonl").write_text("")
    result = invoke("train", cfg, "--out", run)
    assert result.exit_code == 0, result.output
    assert "the run there never took a step; starting it afresh" in result.stdout
    assert load_config(run / "config.yaml").name == "tiny"
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == list(range(1, 21))


def test_a_fresh_run_refuses_a_folder_with_another_runs_files(write_config, tmp_path):
    cfg = write_config()
    run = tmp_path / "run"
    run.mkdir()
    stale = '{"epoch": 1, "step": 999, "train_loss": 0.5}\n'
    (run / "metrics.jsonl").write_text(stale)
    line = error_line(invoke("train", cfg, "--out", run))
    assert line == f"error: {run}: holds metrics.jsonl of another run; remove them or choose another --out"
    assert (run / "metrics.jsonl").read_text() == stale
    assert sorted(p.name for p in run.iterdir()) == ["metrics.jsonl"]


@pytest.mark.parametrize("name", ["metrics.jsonl", "checkpoints/last.npz", "config.yaml"])
def test_symbolic_links_in_a_run_folder_are_refused_not_followed(write_config, tmp_path, name):
    cfg = write_config()
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.write_text("not nnback's\n")
    (run / name).symlink_to(outside)
    for extra in ([], ["--resume"], ["--resume", "--skip-if-done"]):
        line = error_line(invoke("train", cfg, "--out", run, *extra))
        assert line.startswith(f"error: {run / name}: is a symbolic link;")
    assert outside.read_text() == "not nnback's\n"
    assert not (run / "summary.json").exists()


def test_a_linked_checkpoint_is_skipped_when_read(tmp_path):
    from nnback.runfolder.checkpoint import CheckpointStore

    store = CheckpointStore(tmp_path)
    store.save(1, {"x": np.zeros(2)}, {})
    store.last_path.unlink()
    store.last_path.symlink_to(store.step_path(1))
    found = store.load_latest()
    assert found.path == store.step_path(1)
    assert found.skipped == [(store.last_path, "is a symbolic link, not followed")]


def test_copies_started_at_once_on_one_folder_leave_exactly_one_training(write_config, nnback_start,
                                                                        tmp_path):
    cfg = write_config({"train": {"epochs": 40}})
    run = tmp_path / "run"
    procs = [nnback_start("train", cfg, "--out", run, "--resume", "--skip-if-done") for _ in range(5)]
    results = [(proc.wait(timeout=120), *proc.communicate()) for proc in procs]
    codes = sorted(code for code, _, _ in results)
    assert set(codes) <= {0, EXIT_LOCKED} and 0 in codes, results
    assert sum(" run folder " in out for _, out, _ in results) == 1, results
    assert all(err == "" or "locked by pid" in err for _, _, err in results), results
    steps = [r["step"] for r in read_jsonl(run / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and len(steps) == 40
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
