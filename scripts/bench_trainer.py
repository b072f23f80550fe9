"""What the trainer adds to each training step, on the four benchmark cases.

``nnback train``'s loop does more per step than the arithmetic: it gathers the shuffled
batch, checks the loss and the gradient for NaN/inf, records diagnostics every 100
steps and looks at the checkpoint timers. This script times one epoch of the trainer
(``Trainer.fit`` in this process, the default config: diagnostics every 100 steps,
checkpoint timers on, no validation split so the epoch is steps only) against

- the bare step: ``forward``, loss, ``backward``, ``step`` on ready batches, and
- the bare loop: the same with the epoch's shuffled order drawn and each batch gathered
  by ``np.take(out=)``,

interleaved round by round on the same synthetic data, and reports the trainer's
samples per second as a fraction of each (median over rounds, with min-max spread).
The trainer's rate is the ``samples_per_second`` of its epoch's metrics record, which
is taken before the epoch's checkpoint.

All three run with the same number of BLAS threads (``--threads``, default 1).

Usage:
    python scripts/bench_trainer.py [--cases spiral,digits] [--rounds 5] [--seconds 0.5] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CASES, LR, MOMENTUM, cycled_batches, nnback_parts, nnback_train_step, synthetic  # noqa: E402

# Rough samples per second of each case, to size one epoch to about ``--seconds``.
RATES = {"spiral": 3e6, "digits": 8e5, "mnist": 8e4, "wide": 2e4}

CONFIG = """\
name: bench-trainer
seed: 0
data:
  source: {data}
  preprocess: none
model:
  mlp: {{hidden: {hidden}, activation: relu}}
loss: softmax_cross_entropy
optimizer: {{type: sgd, lr: {lr}, momentum: {momentum}}}
train:
  epochs: 1
  batch_size: {batch}
output:
  dir: {runs}
"""


def bare_step(case, x, y):
    """Samples per second of the step alone on contiguous batches."""
    parts = nnback_parts(case)
    next_batch = cycled_batches(x, y, case.batch)
    steps = len(x) // case.batch
    t0 = time.perf_counter()
    for _ in range(steps):
        nnback_train_step(*parts, *next_batch())
    return steps * case.batch / (time.perf_counter() - t0)


def bare_loop(case, x, y):
    """Samples per second of the step on shuffled batches gathered into one buffer."""
    parts = nnback_parts(case)
    n = len(x)
    buffer = np.empty((case.batch, x.shape[1]), x.dtype)
    t0 = time.perf_counter()
    order = np.random.default_rng([0, 0]).permutation(n)  # each epoch draws its order
    for start in range(0, n, case.batch):
        idx = order[start:start + case.batch]
        nnback_train_step(*parts, np.take(x, idx, axis=0, out=buffer[:len(idx)]), y[idx])
    return n / (time.perf_counter() - t0)


def trainer_epoch(config, folder):
    """Samples per second of one ``Trainer.fit`` epoch, from its metrics record."""
    from nnback.config import load_config
    from nnback.data import load_data
    from nnback.runfolder.jsonl import read_jsonl
    from nnback.train.console import Console
    from nnback.train.trainer import Trainer

    exp = load_config(config)
    trainer = Trainer(exp, load_data(exp.data, seed=exp.seed, base_dir=folder), Console("quiet"), str(config))
    folder.mkdir()
    trainer.open(folder)
    trainer.fit()
    return read_jsonl(folder / "metrics.jsonl")[-1]["samples_per_second"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="about this long per epoch")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for all three")
    args = parser.parse_args(argv)
    with threadpool_limits(args.threads, user_api="blas"):
        report(measure(args))


def measure(args):
    """``{case: {"bare step" | "bare loop" | "trainer": [samples/s per round]}}``."""
    names = args.cases.split(",")
    rates = {name: {"bare step": [], "bare loop": [], "trainer": []} for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = {}
        for name in names:
            case = CASES[name]
            rows = max(20, round(RATES[name] * args.seconds / case.batch)) * case.batch
            case = dataclasses.replace(case, samples=rows)
            x, y = synthetic(case, np)
            path = work / f"{name}.npz"
            np.savez(path, X=x, y=y)
            config = work / f"{name}.yaml"
            config.write_text(CONFIG.format(data=path, hidden=list(case.dims[1:-1]), lr=LR,
                                            momentum=MOMENTUM, batch=case.batch, runs=work / "runs"))
            data[name] = (case, x, y, config)
        for r in range(args.rounds):
            for name in names:
                case, x, y, config = data[name]
                rates[name]["bare step"].append(bare_step(case, x, y))
                rates[name]["bare loop"].append(bare_loop(case, x, y))
                rates[name]["trainer"].append(trainer_epoch(config, work / f"run-{name}-{r}"))
    return rates


def report(rates):
    print("| case | bare step | bare loop | trainer | trainer / bare step | trainer / bare loop |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, got in rates.items():
        cells = [f"{statistics.median(got[k]) / 1e3:,.0f} k/s" for k in ("bare step", "bare loop", "trainer")]
        for base in ("bare step", "bare loop"):
            ratios = [t / b for t, b in zip(got["trainer"], got[base], strict=True)]
            cells.append(f"{statistics.median(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
