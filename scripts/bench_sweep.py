"""What running many trials costs: ``nnback sweep`` executors against a shell loop.

The same 8 trials (a grid of 4 learning rates x 2 widths over the digits MLP, a few
epochs each) run four ways, interleaved round by round:

    local-1   nnback sweep --workers 1
    local-2   nnback sweep --workers 2
    dask-2    nnback sweep --scheduler tcp://... on an already running LocalCluster of
              2 single-threaded worker processes (127.0.0.1), as a real cluster would be
    shell-2   8 ``nnback train`` processes, 2 at a time (xargs -P 2), one BLAS thread each

For each: the wall time of the whole command, trials per minute, and the overhead per
trial: ``(wall x slots - training seconds of all trials) / trials``, i.e. the worker
time not spent in the training loop (start-up, imports, data loading, dispatch, the
idle tail), where a trial's training seconds are its ``summary.json`` ``wall_seconds``.
For the sweeps that overhead splits into a fixed part, paid once per command (the
sweep process and its workers starting, the summary at the end: the wall time outside
the span from the first trial's start to the last one's end, from the journal), and a
steady part per trial (the same formula over that span alone: data loading, the run
folder, dispatch), which is what each further trial costs.

Usage:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench_sweep.py [--rounds 3] [--epochs 8]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LRS = [0.01, 0.03, 0.05, 0.1]
UNITS = [64, 128]
MODES = ("local-1", "local-2", "dask-2", "shell-2")


def write_files(folder: Path, epochs: int) -> Path:
    experiment = yaml.safe_load((ROOT / "config" / "digits-mlp.yaml").read_text())
    experiment["train"]["epochs"] = epochs
    experiment["train"].pop("early_stopping", None)  # every trial trains the same number of epochs
    experiment["schedule"] = {"type": "constant"}
    (folder / "exp.yaml").write_text(yaml.safe_dump(experiment))
    sweep = {"name": "bench", "base": "exp.yaml", "metric": "val_loss", "method": "grid",
             "parameters": {"optimizer.lr": LRS, "model.layers.0.units": UNITS}}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def nnback(*args) -> list[str]:
    return [sys.executable, "-m", "nnback.cli", *map(str, args)]


def run_sweep(folder: Path, sweep: Path, out: Path, options: list) -> dict:
    started = time.perf_counter()
    subprocess.run(nnback("sweep", sweep, "--out", out, *options), cwd=folder, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    done = [r for r in records if r["state"] == "completed"]
    assert len(done) == len(LRS) * len(UNITS), f"{out}: {len(done)} trials completed"
    times = [datetime.datetime.fromisoformat(r["time"]).timestamp() for r in records]
    return {"wall": wall, "train": [r["train_seconds"] for r in done], "span": max(times) - min(times)}


def run_shell(folder: Path, out: Path) -> dict:
    """8 nnback train processes, 2 at a time, as a shell loop would run them."""
    lines = [f"--set optimizer.lr={lr} --set model.layers.0.units={u} --out {out}/{i} -q"
             for i, (lr, u) in enumerate((lr, u) for lr in LRS for u in UNITS)]
    command = " ".join(nnback("train", "exp.yaml"))
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.perf_counter()
    subprocess.run(["xargs", "-P", "2", "-L", "1", "sh", "-c", f'exec {command} "$@"', "sh"],
                   input="\n".join(lines) + "\n", text=True, cwd=folder, env=env, check=True)
    wall = time.perf_counter() - started
    train = [json.loads((out / str(i) / "summary.json").read_text())["wall_seconds"]
             for i in range(len(lines))]
    return {"wall": wall, "train": train, "span": None}


def overhead(result: dict, slots: int, seconds: float) -> float:
    """Worker seconds per trial not spent training, over ``seconds`` of ``slots`` workers."""
    return (seconds * slots - sum(result["train"])) / len(result["train"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="Rounds; each runs every mode once.")
    parser.add_argument("--epochs", type=int, default=8, help="Epochs per trial.")
    args = parser.parse_args()
    # This checkout's nnback, in the commands and in the Dask workers (which get sys.path).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(ROOT))
    from distributed import LocalCluster

    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp, \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=":0") as cluster:
        folder = Path(tmp)
        sweep = write_files(folder, args.epochs)
        for r in range(args.rounds):
            results["local-1"].append(run_sweep(folder, sweep, folder / f"l1-{r}", ["--workers", 1]))
            results["local-2"].append(run_sweep(folder, sweep, folder / f"l2-{r}", ["--workers", 2]))
            results["dask-2"].append(run_sweep(folder, sweep, folder / f"d2-{r}",
                                               ["--scheduler", cluster.scheduler_address]))
            results["shell-2"].append(run_shell(folder, folder / f"sh-{r}"))
    report(results, args)


def spread(values: list[float], fmt: str) -> str:
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:{fmt}}"
    return f"{middle:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def report(results: dict, args) -> None:
    trials = len(LRS) * len(UNITS)
    slots = {"local-1": 1, "local-2": 2, "dask-2": 2, "shell-2": 2}
    load = os.getloadavg()[0]
    print(f"{trials} trials of the digits MLP, {args.epochs} epochs each; {args.rounds} rounds, "
          f"median (min-max); {os.cpu_count()} cores, load average {load:.1f} at the end")
    print(f"{'mode':<8}  {'wall s':<18}  {'trials/min':<18}  {'train s/trial':<18}  "
          f"{'overhead s/trial':<18}  {'fixed s':<18}  steady overhead s/trial")
    for mode in MODES:
        rows = results[mode]
        sweeps = [r for r in rows if r["span"] is not None]
        fixed = spread([r["wall"] - r["span"] for r in sweeps], ".1f") if sweeps else "-"
        steady = spread([overhead(r, slots[mode], r["span"]) for r in sweeps], ".2f") if sweeps else "-"
        print(f"{mode:<8}  {spread([r['wall'] for r in rows], '.1f'):<18}  "
              f"{spread([60 * trials / r['wall'] for r in rows], '.1f'):<18}  "
              f"{spread([statistics.fmean(r['train']) for r in rows], '.2f'):<18}  "
              f"{spread([overhead(r, slots[mode], r['wall']) for r in rows], '.2f'):<18}  "
              f"{fixed:<18}  {steady}")
    speedups = [a["wall"] / b["wall"] for a, b in zip(results["local-1"], results["local-2"], strict=True)]
    print(f"speed-up of 2 local workers over 1: {spread(speedups, '.2f')}")


if __name__ == "__main__":
    main()
