"""Benchmark: inference throughput of an exported ONNX model in ONNX Runtime against nnback.

Three models, each with its preprocessing: the shipped digits MLP (config/digits-mlp.yaml,
64-128-10, standardize), the shipped digits ConvNet (config/digits-cnn.yaml) and an
MNIST-shaped MLP (784-256-256-10, scale 1/255), with
freshly initialised weights (speed does not depend on their values). Both sides turn
raw float32 rows into class probabilities: nnback with ``Predictor.predict_proba``,
ONNX Runtime by running the graph ``nnback export`` writes (which also gives the labels).
For each batch size the two run interleaved, round after round, each for about
--seconds per round with the same number of threads (BLAS threads for nnback, intra-op
threads for ONNX Runtime); the table gives rows per second (median over rounds) and the
ratio ONNX Runtime / nnback per round: median, and min-max over the rounds.

Usage:
    python scripts/bench_export.py [--batches 1,64,4096] [--rounds 5] [--seconds 0.5]
        [--threads 1] [--json]

On machines where OPENBLAS_CORETYPE is set, unset it (and OPENBLAS_L2_SIZE) for the
benchmark command alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from nnback.build import build_network
from nnback.config import Experiment, load_config
from nnback.data import DataMeta, Preprocessor
from nnback.data.builtin import load_digits
from nnback.runfolder.saved_model import Predictor

ROOT = Path(__file__).resolve().parent.parent

MNIST_SHAPED = {
    "name": "mnist-shaped", "seed": 0,
    "data": {"source": "mnist", "preprocess": {"type": "scale", "factor": 1 / 255}},
    "model": {"layers": [{"type": "linear", "units": 256}, "relu",
                         {"type": "linear", "units": 256}, "relu", {"type": "linear", "units": "auto"}]},
    "loss": "softmax_cross_entropy",
    "optimizer": {"type": "sgd", "lr": 0.1},
}


def predictor(exp: Experiment, n_features: int, raw_rows: np.ndarray) -> Predictor:
    """An initialised 10-class model of ``exp`` with its preprocessing fitted on raw_rows."""
    data = DataMeta("classification", list(range(10)), n_features, 10,
                    shape=list(exp.data.shape) if getattr(exp.data, "shape", None) else None)
    model = build_network(exp, data, np.random.default_rng(exp.seed), exp.name)
    prep = Preprocessor(exp.data.preprocess.type, exp.data.preprocess.factor).fit(raw_rows)
    return Predictor(model, prep, data, exp)


def models() -> dict[str, tuple[Predictor, np.ndarray]]:
    """name -> (predictor, raw float32 rows to feed it)."""
    rng = np.random.default_rng(0)
    digits = load_digits().X.astype(np.float32)
    pixels = rng.integers(0, 256, size=(8192, 784)).astype(np.float32)
    return {
        "digits 64-128-10": (predictor(load_config(ROOT / "config" / "digits-mlp.yaml"), 64, digits), digits),
        "digits-cnn": (predictor(load_config(ROOT / "config" / "digits-cnn.yaml"), 64, digits), digits),
        "mnist 784-256-256-10": (predictor(Experiment.model_validate(MNIST_SHAPED), 784, pixels), pixels),
    }


def rows_per_second(run, X: np.ndarray, batch: int, seconds: float) -> float:
    """Rows per second of ``run(batch)`` over consecutive batches of X (repeated when
    shorter than a batch) for about ``seconds``."""
    X = np.concatenate([X] * -(-batch // len(X)))
    starts = range(0, len(X) - batch + 1, batch)
    batches = [X[s:s + batch] for s in starts][:64]
    run(batches[0])  # warm up
    done, begin = 0, time.perf_counter()
    while True:
        for xb in batches:
            run(xb)
            done += len(xb)
        elapsed = time.perf_counter() - begin
        if elapsed >= seconds:
            return done / elapsed


def measure(name, pred, X, batch, args, session) -> dict:
    """Interleaved rounds of nnback and ONNX Runtime on one model and batch size."""
    sides = {"nnback": pred.predict_proba, "onnxruntime": lambda xb: session.run(None, {"input": xb})}
    rates = {side: [] for side in sides}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for side in order:
            rates[side].append(rows_per_second(sides[side], X, batch, args.seconds))
    ratios = [o / n for o, n in zip(rates["onnxruntime"], rates["nnback"], strict=True)]
    return {"model": name, "batch": batch,
            "nnback_rows_per_s": statistics.median(rates["nnback"]),
            "onnxruntime_rows_per_s": statistics.median(rates["onnxruntime"]),
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,64,4096", help="Comma-separated batch sizes.")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="Time per side per round.")
    parser.add_argument("--threads", type=int, default=1, help="Threads for both sides.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object per line.")
    args = parser.parse_args()

    import onnxruntime as ort
    from threadpoolctl import threadpool_limits

    from nnback.onnx_graph import build_onnx

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    results = []
    with threadpool_limits(args.threads):
        for name, (pred, X) in models().items():
            session = ort.InferenceSession(build_onnx(pred).SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
            for batch in map(int, args.batches.split(",")):
                results.append(measure(name, pred, X, batch, args, session))
                if args.json:
                    print(json.dumps(results[-1]), flush=True)
    if not args.json:
        print(f"onnxruntime {ort.__version__}, numpy {np.__version__}, {args.threads} thread(s), "
              f"{args.rounds} interleaved rounds of {args.seconds:g} s per side")
        print(f"{'model':<22} {'batch':>6} {'nnback rows/s':>14} {'ORT rows/s':>12} "
              f"{'ORT/nnback':>11} {'spread':>13}")
        for r in results:
            print(f"{r['model']:<22} {r['batch']:>6} {r['nnback_rows_per_s']:>14,.0f} "
                  f"{r['onnxruntime_rows_per_s']:>12,.0f} {r['ratio_median']:>10.2f}x "
                  f"{r['ratio_min']:>6.2f}-{r['ratio_max']:.2f}x")


if __name__ == "__main__":
    main()
