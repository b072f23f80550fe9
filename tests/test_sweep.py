"""``nnback sweep``: the sweep file's checks, the sweep folder, continuing after kills,
the folder lock, failures, and the local and Dask executors, on the tiny spiral."""

from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path

import pytest
import yaml
from conftest import alive, wait_until

from nnback.commands.sweep import SweepOptions, run_sweep
from nnback.errors import EXIT_LOCKED, EXIT_SIGTERM, ConfigError
from nnback.runfolder.checkpoint import CheckpointStore
from nnback.runfolder.jsonl import read_json, read_jsonl
from nnback.runfolder.lock import RunLock
from nnback.sweep.journal import read_states
from nnback.sweep.plan import planned_trials
from nnback.sweep.spec import load_sweep
from nnback.sweep.trial import STOP_ALL, STOP_DIR, check_worker

# 4 trials of 160 steps each, a checkpoint every 20: a fraction of a second of training.
EXPERIMENT = {"train": {"epochs": 20, "checkpoint": {"every_steps": 20}}}
# Trials of 12000 steps with a checkpoint every 1000 (well over a second in all): stopped
# at their first checkpoint, they are far from their end when the stop reaches them.
LONG = {"train": {"epochs": 400, "batch_size": 4, "checkpoint": {"every_steps": 1000}}}
LONG_STEPS = 400 * 30
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


def lock_pid(trial: Path) -> int | None:
    """The pid in the trial's lock file (None while there is none, or it is being written)."""
    try:
        return json.loads((trial / "lock").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def in_training(folder: Path) -> dict[int, str]:
    """``pid -> trial id`` of the trials in mid-training: a checkpoint, no summary yet, and
    the lock of a live worker process."""
    found = {}
    for trial in sorted(folder.glob("trials/*")):
        pid = lock_pid(trial)
        if (pid and alive(pid) and (trial / "checkpoints" / "last.npz").exists()
                and not (trial / "summary.json").exists()):
            found[pid] = trial.name
    return found


def kill_a_worker_in_training(freezer, proc, folder: Path) -> tuple[int, str]:
    """With every worker frozen once all are in mid-training, SIGKILL one and let the rest
    go on; return its pid and the id of the trial it was training."""
    workers = freezer.when(proc, lambda: sorted(in_training(folder)))
    victim = workers[0]
    trial = in_training(folder)[victim]
    os.kill(victim, signal.SIGKILL)
    freezer.thaw(workers)
    return victim, trial


def newest_step(folder: Path, trial: str) -> int:
    """The step of the trial's newest checkpoint."""
    return CheckpointStore(folder / "trials" / trial).load_latest().meta["progress"]["step"]


def at_first_checkpoint(folder: Path, but=()) -> list[int]:
    """The pid of one trial in mid-training (none of ``but``) that has written only its
    first checkpoint."""
    return [pid for pid, trial in in_training(folder).items()
            if pid not in but and len(CheckpointStore(folder / "trials" / trial).step_paths()) == 1][:1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, experiment_file, nnback_in):
    """``(sweep file, folder, completed process)`` of an uninterrupted 2-worker sweep."""
    folder = tmp_path_factory.mktemp("sweep")
    sweep = write_sweep(folder, experiment_file)
    done = nnback_in(folder, "sweep", sweep, "--workers", 2, "--out", folder / "ref")
    assert done.returncode == 0, done.stderr
    return sweep, folder / "ref", done


def test_grid_end_to_end(reference, nnback_cli, tmp_path, monkeypatch):
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
    retrained = nnback_cli("train", folder / "best.yaml", "--out", tmp_path / "run", "-q")
    assert retrained.returncode == 0, retrained.stderr
    values = [r["val_loss"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")]
    assert min(values) == summary["best"]["score"]
    # Re-running the finished sweep runs nothing, and starts no worker process for it.
    monkeypatch.setattr("nnback.sweep.local._Worker", None)
    again = nnback_cli("sweep", sweep, "--workers", 2, "--out", folder)
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


def test_bad_sweep_file_exits_2_without_a_folder(tmp_path, experiment_file, nnback_cli):
    sweep = write_sweep(tmp_path, experiment_file, {"parameters": {"optimizer.momentum": [0.5, 2.0]}})
    done = nnback_cli("sweep", sweep, "--out", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "parameters.optimizer.momentum: value 2.0" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_sigkill_of_the_sweep_then_rerun_completes_identically(reference, tmp_path, nnback_start, nnback,
                                                              freezer):
    sweep, ref, _ = reference
    folder = tmp_path / "sweep"
    proc = nnback_start("sweep", sweep, "--workers", 2, "--out", folder, cwd=sweep.parent)
    workers = freezer.when(proc, lambda: sorted(in_training(folder)))  # their trials cannot end now
    killed_mid_trial = in_training(folder).values()
    proc.kill()
    proc.wait(timeout=30)
    freezer.thaw(workers)
    proc.communicate(timeout=30)  # returns once the workers, which share its stdout, are gone too
    assert {read_states(folder)[trial].state for trial in killed_mid_trial} == {"started"}
    done = nnback("sweep", sweep, "--workers", 2, "--out", folder)
    assert done.returncode == 0, done.stderr
    assert scores(folder) == scores(ref)
    assert set(completions(folder).values()) == {1}


def test_sigkill_of_a_trial_process_is_requeued_and_resumed(reference, tmp_path, nnback_start, freezer):
    sweep, ref, _ = reference
    folder = tmp_path / "sweep"
    proc = nnback_start("sweep", sweep, "--workers", 2, "--out", folder, cwd=sweep.parent)
    victim, trial = kill_a_worker_in_training(freezer, proc, folder)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    requeued = [r for r in read_jsonl(folder / "trials.jsonl") if r["state"] == "requeued"]
    assert [r["trial"] for r in requeued] == [trial]
    assert requeued[0]["message"].startswith(f"worker process {victim} died")
    assert scores(folder) == scores(ref)
    assert set(completions(folder).values()) == {1}


def test_sigterm_stops_trials_with_checkpoints_and_a_rerun_completes(tmp_path, experiment_file, nnback_start,
                                                                    nnback, freezer):
    # Two long trials first, two short ones waiting for a worker.
    grid = {"parameters": {"train.epochs": [LONG["train"]["epochs"], 1], "optimizer.lr": [0.1, 0.2]}}
    sweep = write_sweep(tmp_path, experiment_file, grid, experiment=LONG)
    folder = tmp_path / "out"
    proc = nnback_start("sweep", sweep, "--workers", 2, "--out", folder)
    # Each worker frozen at its trial's first checkpoint: two trials running, far from their end.
    first = freezer.when(proc, lambda: at_first_checkpoint(folder))
    workers = first + freezer.when(proc, lambda: at_first_checkpoint(folder, but=first))
    running = in_training(folder).values()
    assert sorted(read_states(folder)) == sorted(running)
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: (folder / STOP_DIR / STOP_ALL).exists(), proc)  # no trial starts from here on
    freezer.thaw(workers)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_SIGTERM, err
    assert {trial: state.state for trial, state in read_states(folder).items()} == dict.fromkeys(
        running, "interrupted")
    for trial in running:
        run = read_json(folder / "trials" / trial / "summary.json")
        assert run["status"] == "interrupted" and 0 < run["steps"] < LONG_STEPS
        assert newest_step(folder, trial) == run["steps"]
    summary = read_json(folder / "summary.json")
    assert summary["status"] == "interrupted" and summary["trials"] == {"interrupted": 2, "pending": 2}
    done = nnback("sweep", sweep, "--workers", 2, "--out", folder)
    assert done.returncode == 0, done.stderr
    assert [s.state for s in read_states(folder).values()] == ["completed"] * 4
    assert set(completions(folder).values()) == {1}
    for trial in running:  # resumed where they stopped: no epoch trained twice
        epochs = [r["epoch"] for r in read_jsonl(folder / "trials" / trial / "metrics.jsonl")]
        assert epochs == list(range(1, LONG["train"]["epochs"] + 1))


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


def test_failing_trial_is_recorded_and_the_rest_complete(tmp_path, experiment_file, nnback_cli):
    sweep = write_sweep(tmp_path, experiment_file, {"parameters": {"optimizer.lr": [0.1, 1.0e30]}},
                        experiment={"train": {"epochs": 3}})
    done = nnback_cli("sweep", sweep, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    states = read_states(tmp_path / "out")
    failed = [s for s in states.values() if s.state == "failed"]
    assert [s.trial["params"]["optimizer.lr"] for s in failed] == [1.0e30]
    assert failed[0].last["kind"] == "trial" and "loss is nan" in failed[0].last["message"]
    assert sorted(s.state for s in states.values()) == ["completed", "failed"]
    # A re-run leaves the failure alone unless told to retry it.
    assert nnback_cli("sweep", sweep, "--out", tmp_path / "out").returncode == 0
    assert len([r for r in read_jsonl(tmp_path / "out" / "trials.jsonl") if r["state"] == "failed"]) == 1
    assert nnback_cli("sweep", sweep, "--out", tmp_path / "out", "--retry-failed").returncode == 0
    assert len([r for r in read_jsonl(tmp_path / "out" / "trials.jsonl") if r["state"] == "failed"]) == 2


def test_a_trial_folder_locked_elsewhere_is_retried_then_failed(tmp_path, experiment_file, nnback_cli,
                                                                monkeypatch):
    """A trial whose folder another process holds (a trial of a killed sweep still running
    on some worker) is requeued at growing intervals; while the lock stays, it ends failed
    with the lock named, and the next sweep trains it."""
    import nnback.sweep.runner as runner

    monkeypatch.setattr(runner, "RETRY_DELAY_SECONDS", 0.01)
    monkeypatch.setattr(runner, "LOCKED_ATTEMPTS", 3)
    sweep = write_sweep(tmp_path, experiment_file, {"parameters": {"optimizer.lr": [0.1]}},
                        experiment={"train": {"epochs": 2}})
    [trial] = planned_trials(load_sweep(sweep)[0])
    held = tmp_path / "out" / "trials" / trial.id
    held.mkdir(parents=True)
    with RunLock(held):
        done = nnback_cli("sweep", sweep, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    journal = [r for r in read_jsonl(tmp_path / "out" / "trials.jsonl") if r["trial"] == trial.id]
    assert [r["state"] for r in journal if r["state"] != "started"] == ["requeued", "requeued", "failed"]
    assert journal[-1]["kind"] == "machinery"
    assert "locked by pid" in journal[-1]["message"] and "(after 3 attempts)" in journal[-1]["message"]
    again = nnback_cli("sweep", sweep, "--out", tmp_path / "out", "--retry-failed")
    assert again.returncode == 0, again.stderr
    assert read_states(tmp_path / "out")[trial.id].state == "completed"


def test_a_cluster_trial_stops_when_the_sweeps_heartbeat_stops(tmp_path, monkeypatch):
    """On a cluster worker a trial watches DIR/heartbeat, which the sweep process touches
    every few seconds: left unchanged past the timeout (the sweep was killed), it stops."""
    from nnback.sweep import trial as trial_module

    clock = [0.0]
    monkeypatch.setattr(trial_module.time, "monotonic", lambda: clock[0])
    path = tmp_path / "heartbeat"
    path.touch()
    beat = trial_module._Heartbeat(path)

    def stopped_at(seconds: int, touched: bool) -> bool:
        clock[0] = float(seconds)
        if touched:
            os.utime(path, ns=(seconds * 10**9, seconds * 10**9))
        return beat.stopped()

    every = int(trial_module.HEARTBEAT_SECONDS)
    assert not any(stopped_at(t, touched=True) for t in range(every, 20 * every, every))
    last_touch = 19 * every
    after = {t: stopped_at(t, touched=False) for t in range(20 * every, last_touch + 100, 1)}
    first = min(t for t, stopped in after.items() if stopped)  # the watcher stops the trial here
    timeout = trial_module.HEARTBEAT_TIMEOUT
    assert last_touch + timeout < first <= last_touch + timeout + every


def test_dask_local_cluster_with_a_worker_killed_mid_trial(reference, tmp_path, nnback_start, freezer):
    pytest.importorskip("distributed")
    sweep, ref, _ = reference
    folder = tmp_path / "sweep"
    proc = nnback_start("sweep", sweep, "--scheduler", "local:2", "--out", folder, cwd=sweep.parent)
    victim, trial = kill_a_worker_in_training(freezer, proc, folder)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert scores(folder) == scores(ref)
    assert set(completions(folder).values()) == {1}
    journal = read_jsonl(folder / "trials.jsonl")
    assert {r["executor"] for r in journal if r["state"] == "started"} == {"dask"}
    finished = [r for r in journal if r["trial"] == trial and r["state"] == "completed"]
    assert finished[0]["pid"] != victim  # Dask ran it again on another worker process


def test_tpe_with_pruning(tmp_path, experiment_file, nnback_cli):
    pytest.importorskip("optuna")
    sweep = write_sweep(tmp_path, experiment_file, {
        "method": "tpe", "trials": 4, "parameters": {"optimizer.lr": {"log_uniform": [0.01, 1.0]}},
        "prune": {"after_epochs": 1, "min_trials": 1}}, experiment={"train": {"epochs": 4}})
    done = nnback_cli("sweep", sweep, "--out", tmp_path / "out")
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
