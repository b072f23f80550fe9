"""``nnback sweep``: the sweep file's checks, the sweep folder, continuing after kills,
the folder lock, failures, and the local and Dask executors, on the tiny spiral."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from nnback.commands.sweep import SweepOptions, run_sweep
from nnback.errors import EXIT_LOCKED, EXIT_SIGTERM, ConfigError
from nnback.runfolder.jsonl import read_jsonl
from nnback.runfolder.lock import RunLock
from nnback.sweep.journal import read_states
from nnback.sweep.plan import planned_trials
from nnback.sweep.spec import load_sweep
from nnback.sweep.trial import check_worker

# 4 trials of about half a second of training each; a checkpoint every 5 steps.
EXPERIMENT = {"train": {"epochs": 20}}
GRID = {
    "name": "grid",
    "base": "cfg.yaml",
    "metric": "val_loss",
    "method": "grid",
    "parameters": {"optimizer.lr": [0.1, 0.3], "model.layers.0.units": [8, 16]},
}


def write_sweep(folder: Path, experiment_file, changes: dict | None = None, experiment: dict | None = None,
                name: str = "sweep.yaml") -> Path:
    experiment_file(folder / "cfg.yaml", {**EXPERIMENT, **(experiment or {})})
    path = folder / name
    path.write_text(yaml.safe_dump({**GRID, **(changes or {})}, sort_keys=False), encoding="utf-8")
    return path


def scores(folder: Path) -> dict[str, tuple]:
    """``trial id -> (state, score, epoch)`` from the journal."""
    return {k: (s.state, s.last.get("score"), s.last.get("epoch")) for k, s in read_states(folder).items()}


def completions(folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in read_jsonl(folder / "trials.jsonl"):
        if record["state"] == "completed":
            counts[record["trial"]] = counts.get(record["trial"], 0) + 1
    return counts


def wait_until(proc: subprocess.Popen, condition, timeout: float = 30.0) -> None:
    """Wait until ``condition()`` holds while ``proc`` runs."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the sweep"
        try:
            proc.wait(timeout=0.005)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"the sweep exited with {proc.returncode} too early: {proc.stderr.read()}")


def training_trial(folder: Path) -> Path | None:
    """A trial folder with a checkpoint and no summary yet: a trial in mid-training."""
    for trial in sorted((folder / "trials").glob("*")) if (folder / "trials").is_dir() else []:
        if (trial / "checkpoints" / "last.npz").exists() and not (trial / "summary.json").exists():
            return trial
    return None


def lock_pid(trial: Path) -> int | None:
    try:
        return json.loads((trial / "lock").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="module")
def reference(tmp_path_factory, experiment_file, nnback_in):
    """``(sweep file, folder, completed process)`` of an uninterrupted 2-worker sweep."""
    folder = tmp_path_factory.mktemp("sweep")
    sweep = write_sweep(folder, experiment_file)
    done = nnback_in(folder, "sweep", sweep, "--workers", 2, "--out", folder / "ref")
    assert done.returncode == 0, done.stderr
    return sweep, folder / "ref", done


def test_grid_end_to_end(reference, nnback_in, tmp_path):
    sweep, folder, done = reference
    results = scores(folder)
    assert sorted(results) == [t.id for t in planned_trials(load_sweep(sweep)[0])]
    assert all(state == "completed" for state, _, _ in results.values())
    assert set(completions(folder).values()) == {1}
    summary = json.loads((folder / "summary.json").read_text())
    best_id = min(results, key=lambda k: (results[k][1], k))
    assert summary["status"] == "completed" and summary["trials"] == {"completed": 4}
    assert summary["best"]["trial"] == best_id
    assert summary["best"]["score"] == results[best_id][1]
    assert os.readlink(folder / "best") == f"trials/{best_id}"
    assert (folder / "best" / "model.npz").is_file()
    lines = done.stdout.splitlines()
    assert lines[-6].split()[:2] == ["trial", "optimizer.lr"]  # the table, best first
    assert lines[-5].split()[0] == best_id
    # best.yaml retrains the best trial on its own.
    retrained = nnback_in(tmp_path, "train", folder / "best.yaml", "--out", tmp_path / "run", "-q")
    assert retrained.returncode == 0, retrained.stderr
    values = [r["val_loss"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")]
    assert min(values) == summary["best"]["score"]
    # Re-running the finished sweep runs nothing.
    again = nnback_in(sweep.parent, "sweep", sweep, "--workers", 2, "--out", folder)
    assert again.returncode == 0, again.stderr
    assert set(completions(folder).values()) == {1}


def test_random_with_a_seed_gives_the_same_trials(tmp_path, experiment_file):
    ranges = {"method": "random", "trials": 5, "seed": 3,
              "parameters": {"optimizer.lr": {"log_uniform": [0.01, 1.0]},
                             "model.layers.0.units": {"int_uniform": [4, 32]},
                             "model.layers.1": ["relu", "tanh"]}}
    sweep = write_sweep(tmp_path, experiment_file, ranges)
    first, second = (planned_trials(load_sweep(sweep)[0]) for _ in range(2))
    assert first == second and len({t.id for t in first}) == 5
    assert len({t.params["optimizer.lr"] for t in first}) == 5
    assert all(4 <= t.params["model.layers.0.units"] <= 32 for t in first)
    other = write_sweep(tmp_path, experiment_file, {**ranges, "seed": 4}, name="other.yaml")
    assert planned_trials(load_sweep(other)[0]) != first
    more = write_sweep(tmp_path, experiment_file, {**ranges, "trials": 7}, name="more.yaml")
    assert planned_trials(load_sweep(more)[0])[:5] == first  # raising trials keeps the drawn ones


@pytest.mark.parametrize("changes, options, expected", [
    ({"metrc": "val_loss"}, {}, "sweep.yaml: metrc: unknown key 'metrc'"),
    ({"parameters": {"optimizer.lrr": [0.1]}}, {},
     "parameters.optimizer.lrr: value 0.1 is rejected: optimizer.lrr: unknown key"),
    ({"parameters": {"optimizer.lr": [0.1, -1.0]}}, {},
     "parameters.optimizer.lr: value -1.0 is rejected: optimizer.lr: must be greater than 0"),
    ({"parameters": {"model.layers.0.units": {"int_uniform": [0, 8]}}, "method": "random", "trials": 2}, {},
     "parameters.model.layers.0.units: value 0"),
    ({"parameters": {"optimizer.lr": {"log_uniform": [0.01, 0.1]}}}, {},
     "parameters.optimizer.lr: a grid needs a list of values, not a range"),
    ({"parameters": {"optimizer.lr": {"log_uniform": [0.0, 0.1]}}, "method": "random", "trials": 2}, {},
     "parameters.optimizer.lr: log_uniform: low must be greater than 0"),
    ({"parameters": {"optimizer.lr": {"normal": [0.0, 0.1]}}, "method": "random", "trials": 2}, {},
     "parameters.optimizer.lr: unknown range 'normal'"),
    ({"method": "random"}, {}, "trials: method random needs the number of trials"),
    ({}, {"max_trials": 3}, "parameters: the grid has 4 trials, more than --max-trials 3"),
    ({}, {"max_time": "soon"}, "--max-time: invalid duration 'soon'"),
])
def test_bad_sweep_file_is_one_line_naming_the_key(tmp_path, experiment_file, changes, options, expected):
    sweep = write_sweep(tmp_path, experiment_file, changes)
    with pytest.raises(ConfigError) as caught:
        run_sweep(sweep, SweepOptions(out=tmp_path / "out", **options))
    assert len(caught.value.messages) == 1
    assert expected in caught.value.messages[0]
    assert not (tmp_path / "out").exists()


def test_bad_sweep_file_exits_2_without_a_folder(tmp_path, experiment_file, nnback):
    sweep = write_sweep(tmp_path, experiment_file, {"parameters": {"optimizer.momentum": [0.5, 2.0]}})
    done = nnback("sweep", sweep, "--out", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "parameters.optimizer.momentum: value 2.0" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_sigkill_of_the_sweep_then_rerun_completes_identically(reference, tmp_path, nnback_start, nnback):
    sweep, ref, _ = reference
    folder = tmp_path / "sweep"
    proc = nnback_start("sweep", sweep, "--workers", 2, "--out", folder, cwd=sweep.parent)
    wait_until(proc, lambda: training_trial(folder) is not None)
    proc.kill()
    proc.communicate(timeout=30)
    assert any(state != "completed" for state, _, _ in scores(folder).values())
    done = nnback("sweep", sweep, "--workers", 2, "--out", folder)
    assert done.returncode == 0, done.stderr
    assert scores(folder) == scores(ref)
    assert set(completions(folder).values()) == {1}


def test_sigkill_of_a_trial_process_is_requeued_and_resumed(reference, tmp_path, nnback_start):
    sweep, ref, _ = reference
    folder = tmp_path / "sweep"
    proc = nnback_start("sweep", sweep, "--workers", 2, "--out", folder, cwd=sweep.parent)
    wait_until(proc, lambda: training_trial(folder) is not None and lock_pid(training_trial(folder)))
    victim = training_trial(folder)
    os.kill(lock_pid(victim), signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    journal = read_jsonl(folder / "trials.jsonl")
    assert any(r["state"] == "requeued" and r["trial"] == victim.name for r in journal)
    assert scores(folder) == scores(ref)


def test_sigterm_stops_trials_with_checkpoints(reference, tmp_path, nnback_start):
    sweep, _, _ = reference
    folder = tmp_path / "sweep"
    proc = nnback_start("sweep", sweep, "--workers", 2, "--out", folder, cwd=sweep.parent)
    wait_until(proc, lambda: training_trial(folder) is not None)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == EXIT_SIGTERM
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["trials"].get("interrupted")


def test_second_sweep_on_a_locked_folder_exits_4(reference, tmp_path, nnback):
    sweep, _, _ = reference
    with RunLock(tmp_path / "out"):
        done = nnback("sweep", sweep, "--out", tmp_path / "out")
    assert done.returncode == EXIT_LOCKED
    assert "locked by pid" in done.stderr and not (tmp_path / "out" / "trials.jsonl").exists()
    assert done.stderr.count("\n") == 1, done.stderr  # the idle worker process ends quietly


def test_a_sweep_folder_that_is_a_file_is_one_line(reference, tmp_path, nnback):
    """Found by trying: the worker started for it printed a BrokenPipeError traceback."""
    sweep, _, _ = reference
    (tmp_path / "afile").write_text("keep")
    done = nnback("sweep", sweep, "--out", tmp_path / "afile")
    assert (done.returncode, done.stderr) == (2, f"error: {tmp_path / 'afile'}: is a file, not a folder; "
                                                 f"choose another folder\n")


def test_an_experiment_given_as_the_sweep_file(tmp_path, experiment_file):
    cfg = experiment_file(tmp_path / "cfg.yaml")
    with pytest.raises(ConfigError) as caught:
        load_sweep(cfg)
    assert caught.value.messages == [
        f"{cfg}: an experiment, not a sweep file (a sweep names its experiment in base: and what to vary "
        f"in parameters:); train it with: nnback train {cfg}"]
    (tmp_path / "sweep.yaml").write_text("name: s\nmetric: val_loss\n")
    with pytest.raises(ConfigError, match=r"sweep.yaml: base: required key is missing$"):
        load_sweep(tmp_path / "sweep.yaml")


def test_failing_trial_is_recorded_and_the_rest_complete(tmp_path, experiment_file, nnback):
    sweep = write_sweep(tmp_path, experiment_file, {"parameters": {"optimizer.lr": [0.1, 1.0e30]}},
                        experiment={"train": {"epochs": 3}})
    done = nnback("sweep", sweep, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    states = read_states(tmp_path / "out")
    failed = [s for s in states.values() if s.state == "failed"]
    assert [s.trial["params"]["optimizer.lr"] for s in failed] == [1.0e30]
    assert failed[0].last["kind"] == "trial" and "loss is nan" in failed[0].last["message"]
    assert sorted(s.state for s in states.values()) == ["completed", "failed"]
    # A re-run leaves the failure alone unless told to retry it.
    assert nnback("sweep", sweep, "--out", tmp_path / "out").returncode == 0
    assert len([r for r in read_jsonl(tmp_path / "out" / "trials.jsonl") if r["state"] == "failed"]) == 1
    assert nnback("sweep", sweep, "--out", tmp_path / "out", "--retry-failed").returncode == 0
    assert len([r for r in read_jsonl(tmp_path / "out" / "trials.jsonl") if r["state"] == "failed"]) == 2


def test_dask_local_cluster_with_a_worker_killed_mid_trial(reference, tmp_path, nnback_start):
    pytest.importorskip("distributed")
    sweep, ref, _ = reference
    folder = tmp_path / "sweep"
    proc = nnback_start("sweep", sweep, "--scheduler", "local:2", "--out", folder, cwd=sweep.parent)
    wait_until(proc, lambda: training_trial(folder) is not None and lock_pid(training_trial(folder)), 60)
    victim = training_trial(folder)
    os.kill(lock_pid(victim), signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert scores(folder) == scores(ref)
    assert set(completions(folder).values()) == {1}
    started = [r for r in read_jsonl(folder / "trials.jsonl") if r["state"] == "started"]
    assert {r["executor"] for r in started} == {"dask"}


def test_tpe_with_pruning(tmp_path, experiment_file, nnback):
    pytest.importorskip("optuna")
    sweep = write_sweep(tmp_path, experiment_file, {
        "method": "tpe", "trials": 4, "parameters": {"optimizer.lr": {"log_uniform": [0.01, 1.0]}},
        "prune": {"after_epochs": 1, "min_trials": 1}}, experiment={"train": {"epochs": 4}})
    done = nnback("sweep", sweep, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    states = read_states(tmp_path / "out")
    assert len(states) == 4 and {s.state for s in states.values()} <= {"completed", "pruned"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["best"]["trial"] in states
    assert 0.01 <= summary["best"]["params"]["optimizer.lr"] <= 1.0


def test_worker_check_names_the_path_it_cannot_see(tmp_path, experiment_file):
    config = experiment_file(tmp_path / "cfg.yaml")
    assert check_worker(str(tmp_path), str(tmp_path), str(config)) is None
    missing = tmp_path / "not-shared"
    assert check_worker(str(missing), str(tmp_path), str(config)).startswith(f"{missing}: not found")
    data = experiment_file(tmp_path / "data.yaml", {"data": {"source": "rows.csv", "target": "label"}})
    assert "rows.csv: file not found" in check_worker(str(tmp_path), str(tmp_path), str(data))


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "config" / "sweeps").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_sweeps_are_valid(path, tmp_path):
    listing = io.StringIO()
    assert run_sweep(path, SweepOptions(dry_run=True, out=tmp_path / "out"), listing) == 0
    spec = load_sweep(path)[0]
    assert len(listing.getvalue().splitlines()) == 1 + len(planned_trials(spec))
    assert not (tmp_path / "out").exists()
