"""Benchmark: peak memory of batch gathering from a memory-mapped .npy file.

For each file size, writes a float32 feature file x.npy (rows of --features values) and
labels y.npy, then runs a fresh Python process that loads them through nnback's data
layer (``mmap: true``, standardize, 10% validation split) and gathers every training
batch of --epochs shuffled epochs the way the trainer does (``Split.take`` into one
reused buffer, preprocessing applied per batch). The child reports its peak resident
set (VmHWM, which counts mapped file pages too), so the numbers are per run. For
contrast the same data is also loaded without memory mapping.

Usage: python scripts/bench_memmap.py [--sizes-mb 64 256] [--batch-size 128]
       [--features 784] [--epochs 1] [--dir /tmp/nnback-bench]
Linux only (reads /proc/self/status).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MIB = 1 << 20


def status_mib(*keys: str) -> dict[str, float]:
    """Fields of /proc/self/status (kB values) in MiB."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in keys:
            values[key] = int(rest.split()[0]) / 1024
    return values


def write_files(folder: Path, size_mb: int, features: int) -> int:
    """Write x.npy (about size_mb MiB of float32) and y.npy in chunks; return the row count."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = size_mb * MIB // (4 * features)
    rng = np.random.default_rng(0)
    X = np.lib.format.open_memmap(folder / "x.npy", mode="w+", dtype=np.float32,
                                  shape=(rows, features))
    step = max(1, 16 * MIB // (4 * features))
    for start in range(0, rows, step):
        stop = min(start + step, rows)
        X[start:stop] = rng.normal(100.0, 20.0, size=(stop - start, features))
    X.flush()
    del X
    np.save(folder / "y.npy", rng.integers(0, 10, size=rows))
    return rows


def child(folder: Path, mmap: bool, batch_size: int, epochs: int) -> None:
    """Load folder/x.npy, y.npy through nnback and gather all batches; print JSON."""
    from pydantic import TypeAdapter

    from nnback.config.data_schema import DataConfig
    from nnback.data import load_data

    baseline = status_mib("VmRSS")["VmRSS"]
    cfg = TypeAdapter(DataConfig).validate_python({
        "source": {"x": "x.npy", "y": "y.npy"}, "mmap": mmap,
        "split": {"val": 0.1}, "preprocess": "standardize"})
    start = time.perf_counter()
    bundle = load_data(cfg, seed=0, base_dir=folder)
    loaded = time.perf_counter()
    split = bundle.train
    rng = np.random.default_rng(1)
    buffer = np.empty((batch_size, split.n_features), np.float32)
    total = 0.0
    for _ in range(epochs):
        order = rng.permutation(len(split))
        for begin in range(0, len(order), batch_size):
            Xb, _ = split.take(order[begin:begin + batch_size], out_X=buffer)
            total += float(Xb[0, 0])
    done = time.perf_counter()
    print(json.dumps({
        "baseline_mib": baseline, **status_mib("VmHWM", "RssAnon", "RssFile"),
        "load_s": loaded - start, "gather_s": done - loaded,
        "rows_per_s": epochs * len(split) / (done - loaded), "train_rows": len(split),
        "checksum": total,
    }))


def run_child(folder: Path, mmap: bool, args) -> dict:
    command = [sys.executable, __file__, "--child", str(folder), "--batch-size",
               str(args.batch_size), "--epochs", str(args.epochs)] + (["--mmap"] if mmap else [])
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--features", type=int, default=784)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/nnback-bench"))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mmap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.mmap, args.batch_size, args.epochs)
        return
    working_set = args.batch_size * args.features * 4 / MIB
    print(f"batch {args.batch_size} x {args.features} float32: working set "
          f"{working_set:.2f} MiB per batch; {args.epochs} epoch(s); peak = VmHWM of a fresh process")
    print(f"{'file MiB':>9} {'mode':>9} {'baseline':>9} {'peak RSS':>9} {'growth':>8} "
          f"{'RssAnon':>8} {'RssFile':>8} {'load s':>7} {'rows/s':>9}")
    for size in args.sizes_mb:
        folder = args.dir / f"{size}mb"
        write_files(folder, size, args.features)
        file_mib = (folder / "x.npy").stat().st_size / MIB
        for mmap in (True, False):
            r = run_child(folder, mmap, args)
            print(f"{file_mib:9.0f} {'mmap' if mmap else 'in-memory':>9} {r['baseline_mib']:9.1f} "
                  f"{r['VmHWM']:9.1f} {r['VmHWM'] - r['baseline_mib']:8.1f} {r['RssAnon']:8.1f} "
                  f"{r['RssFile']:8.1f} {r['load_s']:7.2f} {r['rows_per_s']:9.0f}")
        shutil.rmtree(folder)
    print("units: MiB; growth = peak RSS - RSS after imports; RssAnon/RssFile at the end of the run")


if __name__ == "__main__":
    main()
