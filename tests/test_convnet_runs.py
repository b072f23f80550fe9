"""The commands that read run folders, on a ConvNet's run folder and on a sweep's folder
and trials: ``runs``, ``plot``, ``diagnose``, ``eval`` and ``predict``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import yaml

from nnback.data.builtin import load_digits

CONFIG = Path(__file__).parent.parent / "config"


@pytest.fixture
def cnn_run(tmp_path, nnback_cli):
    """A digits-cnn run folder of 2 epochs with gradient-flow records every 4 steps."""
    run = tmp_path / "cnn"
    result = nnback_cli("train", CONFIG / "digits-cnn.yaml", "--set", "train.epochs=2",
                        "--set", "train.diagnostics.every=4", "--out", run, "--quiet")
    assert result.returncode == 0, result.stderr
    return run


def test_every_reading_command_works_on_a_convnet_run(cnn_run, tmp_path, nnback_cli):
    listed = nnback_cli("runs", tmp_path)
    assert listed.returncode == 0 and "digits-cnn: 1 run" in listed.stdout
    pytest.importorskip("matplotlib")
    assert nnback_cli("plot", cnn_run, "--out", tmp_path / "p.png").returncode == 0
    assert (tmp_path / "p.png").stat().st_size > 0
    diagnosed = nnback_cli("diagnose", cnn_run)
    assert diagnosed.returncode == 0 and "0 Conv2d" in diagnosed.stdout
    evaluated = nnback_cli("eval", cnn_run, "--json")
    assert evaluated.returncode == 0 and '"test_accuracy"' in evaluated.stdout
    images = np.asarray(load_digits().X)
    # rows of 64 pixels, or images of the data's shape (1, 8, 8): the same predictions
    np.save(tmp_path / "rows.npy", images[:6].reshape(6, 64).astype(np.float32))
    np.save(tmp_path / "images.npy", images[:6].reshape(6, 1, 8, 8).astype(np.float32))
    predicted = [nnback_cli("predict", cnn_run, tmp_path / name) for name in ("rows.npy", "images.npy")]
    assert all(p.returncode == 0 for p in predicted)
    assert predicted[0].stdout == predicted[1].stdout
    assert len(list(csv.reader(io.StringIO(predicted[0].stdout)))) == 7


@pytest.fixture
def sweep(tmp_path, nnback_cli, experiment_file):
    """A finished grid of 2 trials over the learning rate of the tiny experiment."""
    experiment_file(tmp_path / "cfg.yaml", {"train": {"epochs": 3}})
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "name": "lr", "base": "cfg.yaml", "metric": "val_loss", "method": "grid",
        "parameters": {"optimizer.lr": [0.1, 0.3]}}))
    result = nnback_cli("sweep", tmp_path / "sweep.yaml", "--out", tmp_path / "sw")
    assert result.returncode == 0, result.stderr
    return tmp_path / "sw"


def test_runs_compares_a_sweeps_trials_as_one_experiment(sweep, nnback_cli):
    listed = nnback_cli("runs", sweep)
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0] == f"lr: 2 runs in {sweep / 'trials'}"
    assert lines[1].split()[:3] == ["run", "status", "lr"]
    assert sorted(line.split()[2] for line in lines[2:4]) == ["0.1", "0.3"]


def test_plot_of_a_sweep_folder_plots_its_trials(sweep, monkeypatch, tmp_path):
    from nnback.commands import plot

    plotted = []

    def figure(runs, *args):
        plotted.extend(run.path for run in runs)
        raise SystemExit  # drawing is not what this test is about

    monkeypatch.setattr(plot, "make_figure", figure)
    with pytest.raises(SystemExit):
        plot.plot_runs([sweep], tmp_path / "p.png")
    assert plotted == sorted((sweep / "trials").iterdir())


@pytest.mark.parametrize("command, rest", [("diagnose", []), ("eval", ["--split", "val"]),
                                           ("predict", ["in.npy"])])
def test_a_sweep_folder_where_one_run_is_needed_names_its_trials(sweep, nnback_cli, command, rest):
    np.save(sweep.parent / "in.npy", np.zeros((2, 2), np.float32))
    result = nnback_cli(command, sweep, *rest)
    assert result.returncode == 2
    assert result.stderr == (f"error: {sweep}: is a sweep folder, not a run folder: give one of its "
                             f"trials, {sweep / 'best'} (the best one) or {sweep / 'trials'}/<id>\n")
    best = nnback_cli(command, sweep / "best", *rest)
    assert best.returncode == (2 if command == "diagnose" else 0)  # 3 epochs: no diagnostics yet
