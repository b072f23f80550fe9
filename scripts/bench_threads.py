"""BLAS threads for training: the automatic choice against 1 and 2 fixed threads.

For each benchmark case (the MLPs of ``scripts/bench.py``), times training steps with
one BLAS thread, two, and the count ``nnback.train.threads.choose_threads`` picks at
that moment, interleaved round by round, on an otherwise idle machine and with a second
process keeping one core busy. Reports samples per second (median over rounds) and the
automatic choice's rate as a fraction of the better fixed count in the same round
(median, min-max spread): 1.00 means as fast as the better fixed choice.

Usage:
    python scripts/bench_threads.py [--cases spiral,digits] [--rounds 3] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CASES, nnback_parts, nnback_step, synthetic  # noqa: E402

from nnback.train.threads import choose_threads  # noqa: E402

SETTINGS = ("1", "2", "auto")
BUSY_LOOP = "while True: pass"


def rate(step, batch, seconds):
    """Samples per second of ``step`` over about ``seconds`` (after one warm-up step)."""
    step()
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        steps += 1
    return steps * batch / (time.perf_counter() - t0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args(argv)
    names = args.cases.split(",")
    steps, models = {}, {}
    for name in names:
        case = dataclasses.replace(CASES[name], samples=CASES[name].batch * 16)
        x, y = synthetic(case, np)
        steps[name] = (case, nnback_step(case, x, y))
        models[name] = nnback_parts(case)[0]
    rates, chosen = {}, {}
    for _ in range(args.rounds):
        for condition in ("idle", "one core busy"):
            busy = (subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
                    if condition != "idle" else None)
            try:
                if busy is not None:
                    time.sleep(0.3)  # let the busy loop start
                for name in names:
                    case, step = steps[name]
                    for setting in SETTINGS:
                        count = (choose_threads(models[name], case.batch) if setting == "auto"
                                 else int(setting))
                        if setting == "auto":
                            chosen.setdefault((condition, name), []).append(count)
                        with threadpool_limits(count, user_api="blas"):
                            rates.setdefault((condition, name, setting), []).append(
                                rate(step, case.batch, args.seconds))
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    print("| condition | case | 1 thread | 2 threads | automatic (threads chosen) "
          "| automatic / better fixed |")
    print("|---|---|---:|---:|---:|---:|")
    for condition in ("idle", "one core busy"):
        for name in names:
            got = {s: rates[(condition, name, s)] for s in SETTINGS}
            ratios = [a / max(one, two) for a, one, two in zip(got["auto"], got["1"], got["2"], strict=True)]
            cells = [f"{statistics.median(got[s]) / 1e3:,.1f} k/s" for s in SETTINGS]
            cells[2] += f" ({','.join(map(str, chosen[(condition, name)]))})"
            print(f"| {condition} | {name} | " + " | ".join(cells)
                  + f" | {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()
