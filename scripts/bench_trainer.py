"""What the trainer adds to each training step, on the four benchmark cases.

``nnback train``'s loop does more per step than the arithmetic: it gathers the shuffled
batch, checks the loss and the gradient for NaN/inf, records diagnostics every 100
steps and looks at the checkpoint timers. This script times ``Trainer.fit`` in this
process (the default config: diagnostics every 100 steps, checkpoint timers on) on the
case's own data set (spiral 30,000 rows, digits 1,792, the larger two at most about
``--seconds`` worth), for as many epochs as take about ``--seconds``, with one
evaluation at the very end and no checkpoint at epoch ends, so what is timed is the
steps and each epoch's shuffle; against

- the bare step: ``forward``, loss, ``backward``, ``step`` on ready batches, and
- the bare loop: the same with each epoch's shuffled order drawn and each batch
  gathered by ``np.take(out=)``,

interleaved round by round on the same synthetic data, and reports the trainer's
samples per second as a fraction of each (median over rounds, with min-max spread).
The trainer's rate is the ``samples_per_second`` of its final metrics record, which
is taken before the run's last checkpoint.

All three run with the same number of BLAS threads (``--threads``, default 1).
``--rows N`` trains on N rows instead: a data set far larger than the CPU caches
makes every gathered row a memory access, which the bare step's contiguous batches
do not pay.

Usage:
    python scripts/bench_trainer.py [--cases spiral,digits] [--rounds 5] [--seconds 0.5]
        [--threads 1] [--rows N]
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

# Rough samples per second of each case, to size a run to about ``--seconds``.
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
  epochs: {epochs}
  batch_size: {batch}
  eval_every: {steps}
  checkpoint: {{every_epochs: null}}
output:
  dir: {runs}
"""


def bare_step(case, x, y, epochs):
    """Samples per second of the step alone on contiguous batches."""
    parts = nnback_parts(case)
    next_batch = cycled_batches(x, y, case.batch)
    steps = epochs * (len(x) // case.batch)
    t0 = time.perf_counter()
    for _ in range(steps):
        nnback_train_step(*parts, *next_batch())
    return steps * case.batch / (time.perf_counter() - t0)


def bare_loop(case, x, y, epochs):
    """Samples per second of the step on shuffled batches gathered into one buffer."""
    parts = nnback_parts(case)
    n = len(x)
    buffer = np.empty((case.batch, x.shape[1]), x.dtype)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = np.random.default_rng([0, epoch]).permutation(n)  # each epoch draws its order
        for start in range(0, n, case.batch):
            idx = order[start:start + case.batch]
            nnback_train_step(*parts, np.take(x, idx, axis=0, out=buffer[:len(idx)]), y[idx])
    return epochs * n / (time.perf_counter() - t0)


def trainer_run(config, folder):
    """Samples per second of ``Trainer.fit``, from its final metrics record."""
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


def sized(name, seconds, rows=None):
    """``(the case with its data rows, epochs)``: whole batches of the case's data (at most
    ``seconds`` worth, at least 20 batches) or of ``rows``, for about ``seconds`` in all."""
    case, work = CASES[name], RATES[name] * seconds
    rows = rows or min(case.samples, max(20 * case.batch, round(work)))
    rows = max(1, rows // case.batch) * case.batch
    return dataclasses.replace(case, samples=rows), max(1, round(work / rows))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="about this long per measurement")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for all three")
    parser.add_argument("--rows", type=int, help="train on this many rows instead of the case's data set")
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
            case, epochs = sized(name, args.seconds, args.rows)
            x, y = synthetic(case, np)
            path = work / f"{name}.npz"
            np.savez(path, X=x, y=y)
            config = work / f"{name}.yaml"
            config.write_text(CONFIG.format(data=path, hidden=list(case.dims[1:-1]), lr=LR, momentum=MOMENTUM,
                                            batch=case.batch, epochs=epochs,
                                            steps=epochs * case.samples // case.batch, runs=work / "runs"))
            data[name] = (case, x, y, epochs, config)
        for r in range(args.rounds):
            for name in names:
                case, x, y, epochs, config = data[name]
                rates[name]["bare step"].append(bare_step(case, x, y, epochs))
                rates[name]["bare loop"].append(bare_loop(case, x, y, epochs))
                rates[name]["trainer"].append(trainer_run(config, work / f"run-{name}-{r}"))
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
