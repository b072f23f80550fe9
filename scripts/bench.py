"""Training-step throughput of nnback on the CPU, against the same step written by hand
in NumPy, PyTorch and scikit-learn.

One training step is forward + softmax cross-entropy + backward + an SGD update with
momentum 0.9, in float32, on synthetic data. For each case the benchmark reports
nnback's samples per second, its achieved GFLOP/s and the fraction of the machine's
float32 matrix-multiply peak (measured in the same run), its peak resident memory,
the "matrix multiplies alone" bound (the same GEMMs with nothing else) and the ratio
to a hand-written NumPy step for that one network doing the same arithmetic. With
``--against torch`` / ``--against sklearn`` the same network, batch, optimizer and
data run in those libraries too; with PyTorch it also times the same GEMMs on
PyTorch's BLAS, which separates the BLAS libraries' speed from the frameworks'.
``--baseline PATH`` times the nnback of another checkout as well, to measure a change.
All run interleaved round by round, and each ratio is the median of the ratios of the
same round, with their spread. Every measurement runs in a worker process of its own,
so peak memory is per case and library.

Usage:
    python scripts/bench.py [--cases spiral,digits] [--seconds 1] [--rounds 3]
        [--against torch] [--against sklearn] [--baseline PATH] [--train] [--startup]
        [--tiny] [--json]

``--train`` also times ``nnback train`` end to end against the bare step loop on
mnist-shaped data, and the cost of gradient-flow diagnostics; ``--startup`` times
``nnback --help`` and ``nnback validate``. ``--tiny`` is a seconds-long smoke run.
On machines where OPENBLAS_CORETYPE is set, unset it (and OPENBLAS_L2_SIZE) for the
benchmark command alone; the report names the BLAS kernel in use.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LR = 1e-3  # small enough that random labels never saturate the softmax (no denormals)
MOMENTUM = 0.9
SKLEARN_CHUNK = 16  # batches per partial_fit call
REST = 0.05  # seconds between two measurements: BLAS and OpenMP threads spin a while after work


@dataclasses.dataclass(frozen=True)
class Case:
    """A benchmark network: layer widths ``dims`` (input first), batch size, data rows."""

    dims: tuple
    batch: int
    samples: int

    def flops(self):
        """Matrix-multiply FLOPs of one step: forward, dW and dx, no dx for the input."""
        n = self.batch
        pairs = list(pairwise(self.dims))
        return 2 * n * (3 * sum(a * b for a, b in pairs) - pairs[0][0] * pairs[0][1])

    def bytes(self):
        """data + parameters + gradients + momentum + one batch's activations and their
        gradients, float32 (labels int64): what a training process must hold."""
        params = sum(a * b + b for a, b in pairwise(self.dims))
        activations = self.batch * sum(self.dims[1:])
        return self.samples * (self.dims[0] * 4 + 8) + 3 * params * 4 + 2 * activations * 4


CASES = {
    "spiral": Case((2, 100, 3), 300, 30_000),
    "digits": Case((64, 128, 10), 64, 1_792),
    "mnist": Case((784, 256, 256, 10), 128, 60_000),
    "wide": Case((784, 1024, 1024, 10), 512, 60_000),
}
TITLES = {"spiral": "spiral 2-100-3, batch 300", "digits": "digits 64-128-10, batch 64",
          "mnist": "mnist-shaped 784-256-256-10, batch 128",
          "wide": "wide 784-1024-1024-10, batch 512"}
LIBRARIES = ("nnback", "handwritten", "baseline", "matmul", "torch", "torch-matmul", "sklearn")
LABELS = {"handwritten": "hand-written NumPy", "baseline": "baseline nnback",
          "torch": "PyTorch", "sklearn": "scikit-learn"}
BOUNDS = ("matmul", "torch-matmul")  # the multiplies alone, on NumPy's and PyTorch's BLAS
BLAS_NAMES = {"matmul": "NumPy's BLAS", "torch-matmul": "PyTorch's BLAS"}


def tiny(case):
    """The same network on 4 batches of data."""
    return dataclasses.replace(case, samples=4 * case.batch)


# --- workers: one process per (library, case) ----------------------------------


def synthetic(case, np):
    """Gaussian float32 inputs (samples, D_in) and uniform int64 labels (samples,)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((case.samples, case.dims[0]), dtype=np.float32)
    y = rng.integers(0, case.dims[-1], case.samples)
    return x, y


def nnback_parts(case):
    """The case's model (Linear/ReLU, He init), loss and SGD-momentum optimizer."""
    import numpy as np

    from nnback.layers import Linear, ReLU
    from nnback.losses import SoftmaxCrossEntropy
    from nnback.model import Sequential
    from nnback.optim import SGD

    rng = np.random.default_rng(1)
    layers = []
    for i, (a, b) in enumerate(pairwise(case.dims)):
        layers += [Linear(a, b, rng=rng)] + ([ReLU()] if i < len(case.dims) - 2 else [])
    model = Sequential(layers)
    return model, SoftmaxCrossEntropy(), SGD(model.parameters(), lr=LR, momentum=MOMENTUM)


def nnback_train_step(model, loss_fn, opt, xb, yb):
    """One step: forward, loss, backward (no input gradient), update."""
    _, dscores = loss_fn(model.forward(xb), yb)
    model.backward(dscores, input_grad=False)
    opt.step()


def cycled_batches(x, y, batch):
    """A function returning the next (x, y) batch of ``batch`` rows each call, round robin."""
    batches = itertools.cycle([(x[i:i + batch], y[i:i + batch])
                               for i in range(0, len(x) - batch + 1, batch)])
    return lambda: next(batches)


def nnback_step(case, x, y):
    """A step function over the batches of (x, y), in turn."""
    parts = nnback_parts(case)
    next_batch = cycled_batches(x, y, case.batch)

    def step():
        nnback_train_step(*parts, *next_batch())
        return 1

    return step


def handwritten_step(case, x, y):
    """The same step written by hand for this one network in plain NumPy: the bound
    nnback is held to. The same float32 GEMMs into preallocated arrays, bias added and
    ReLU applied in place (against preallocated zeros), softmax cross-entropy fused
    into one pass over the scores, no gradient on the input, and SGD with momentum as
    torch.optim and nnback define it (``b = g`` on the first step, then
    ``b = momentum * b + g``; ``p = p - lr * b``) over parameters, gradients and
    momentum each held in one flat array."""
    import numpy as np

    rng = np.random.default_rng(1)
    n, dims = case.batch, case.dims
    shapes = [shape for a, b in pairwise(dims) for shape in ((a, b), (b,))]
    total = sum(math.prod(shape) for shape in shapes)
    flat_p, flat_g, flat_b, scratch = (np.zeros(total, np.float32) for _ in range(4))

    def views(flat):
        arrays, start = [], 0
        for shape in shapes:
            arrays.append(flat[start:start + math.prod(shape)].reshape(shape))
            start += math.prod(shape)
        return arrays

    weights, biases = views(flat_p)[0::2], views(flat_p)[1::2]
    dweights, dbiases = views(flat_g)[0::2], views(flat_g)[1::2]
    for w in weights:
        w[...] = rng.standard_normal(w.shape, dtype=np.float32) * np.float32(
            math.sqrt(2 / len(w)))
    acts = [np.empty((n, d), np.float32) for d in dims[1:]]
    zeros = [np.zeros((n, d), np.float32) for d in dims[1:-1]]  # max against an array: NumPy's fast loop
    deltas = [np.empty((n, d), np.float32) for d in dims[1:-1]]
    masks = [np.empty((n, d), np.float32) for d in dims[1:-1]]
    batch_ones, class_ones = np.ones(n, np.float32), np.ones(dims[-1], np.float32)
    starts = np.arange(0, n * dims[-1], dims[-1])
    last = len(weights) - 1
    next_batch = cycled_batches(x, y, n)
    first = [True]

    def step():
        xb, yb = next_batch()
        h = xb
        for i in range(last + 1):
            np.matmul(h, weights[i], out=acts[i])
            acts[i] += biases[i]
            if i < last:
                np.maximum(acts[i], zeros[i], out=acts[i])
            h = acts[i]
        scores = acts[last]  # softmax cross-entropy, in place: scores become dscores
        scores -= np.asfortranarray(scores).max(axis=1)[:, None]
        targets = starts + yb
        picked = float(scores.take(targets).sum())
        np.exp(scores, out=scores)
        sums = np.matmul(scores, class_ones)
        loss = (float(np.log(sums).sum()) - picked) / n  # noqa: F841 (computed, as nnback does)
        sums *= n
        scores /= sums[:, None]
        scores.reshape(-1)[targets] -= 1 / n
        d = scores
        for i in range(last, -1, -1):
            np.matmul((acts[i - 1] if i else xb).T, d, out=dweights[i])
            np.matmul(batch_ones, d, out=dbiases[i])
            if i:
                np.matmul(d, weights[i].T, out=deltas[i - 1])
                np.greater(acts[i - 1], 0, out=masks[i - 1])
                deltas[i - 1] *= masks[i - 1]
                d = deltas[i - 1]
        if first[0]:
            np.copyto(flat_b, flat_g)
            first[0] = False
        else:
            np.multiply(flat_b, MOMENTUM, out=flat_b)
            np.add(flat_b, flat_g, out=flat_b)
        np.multiply(flat_b, LR, out=scratch)
        np.subtract(flat_p, scratch, out=flat_p)
        return 1

    step.flat_params = flat_p  # W and b of each layer in turn, as nnback packs them
    return step


def gemm_step(case, x, matmul, wrap):
    """The step's GEMMs alone, into preallocated arrays: ``matmul(a, b, out=)`` on the
    NumPy float32 arrays as ``wrap`` turns them into the library's own."""
    import numpy as np

    rng = np.random.default_rng(1)
    n, dims = case.batch, case.dims
    weights = [wrap(rng.standard_normal((a, b), dtype=np.float32) * np.float32(a ** -0.5))
               for a, b in pairwise(dims)]
    grads = [wrap(np.empty((a, b), np.float32)) for a, b in pairwise(dims)]
    acts = [wrap(x[:n])] + [wrap(np.empty((n, d), np.float32)) for d in dims[1:]]
    deltas = [None] + [wrap(rng.standard_normal((n, d), dtype=np.float32)) for d in dims[1:]]

    def step():
        for i, w in enumerate(weights):
            matmul(acts[i], w, out=acts[i + 1])
        for i in range(len(weights) - 1, -1, -1):
            matmul(acts[i].T, deltas[i + 1], out=grads[i])
            if i:
                matmul(deltas[i + 1], weights[i].T, out=deltas[i])
        return 1

    return step


def matmul_step(case, x, y):
    """The step's GEMMs alone on NumPy's BLAS."""
    import numpy as np

    return gemm_step(case, x, np.matmul, lambda a: a)


def torch_matmul_step(case, x, y, threads):
    """The step's GEMMs alone on PyTorch's BLAS."""
    import torch

    torch.set_num_threads(threads)
    return gemm_step(case, x, torch.mm, torch.from_numpy)


def torch_step(case, x, y, threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    layers = []
    for i, (a, b) in enumerate(pairwise(case.dims)):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.ReLU()] if i < len(case.dims) - 2 else [])
    return torch_sgd_step(torch.nn.Sequential(*layers), torch.from_numpy(x), torch.from_numpy(y), case.batch)


def torch_sgd_step(net, x, y, batch):
    """One PyTorch training step of ``net`` on the next batch of ``x``, ``y`` (tensors):
    cross-entropy, backward, SGD with momentum."""
    import torch

    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()
    next_batch = cycled_batches(x, y, batch)

    def step():
        xb, yb = next_batch()
        opt.zero_grad()
        loss_fn(net(xb), yb).backward()
        opt.step()
        return 1

    return step


def sklearn_step(case, x, y):
    """partial_fit over chunks of SKLEARN_CHUNK batches: one SGD step per batch."""
    import numpy as np
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=case.dims[1:-1], activation="relu", solver="sgd",
                          alpha=0.0, batch_size=case.batch, learning_rate_init=LR,
                          momentum=MOMENTUM, nesterovs_momentum=False, shuffle=False,
                          random_state=1)
    rows = min(SKLEARN_CHUNK * case.batch, case.samples // case.batch * case.batch)
    next_chunk = cycled_batches(x, y, rows)
    classes = np.arange(case.dims[-1])

    def step():
        model.partial_fit(*next_chunk(), classes=classes)
        return rows // case.batch

    return step


STEPS = {"nnback": nnback_step, "baseline": nnback_step, "handwritten": handwritten_step,
         "matmul": matmul_step, "sklearn": sklearn_step}
TORCH_STEPS = {"torch": torch_step, "torch-matmul": torch_matmul_step}


def peak_gflops(np, size, seconds):
    """Best float32 GEMM rate, GFLOP/s, of a (size, size) @ (size, size) product."""
    rng = np.random.default_rng(2)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = max(best, 2 * size ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def timed(step, seconds):
    """Steps per second of ``step`` over about ``seconds``, after a short warm-up."""
    warm_end = time.perf_counter() + min(0.25, seconds / 4)
    step()
    while time.perf_counter() < warm_end:
        step()
    steps, t0 = 0, time.perf_counter()
    while True:
        steps += step()
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return steps / elapsed


def rss_mib(field):
    """A VmHWM / VmRSS line of /proc/self/status in MiB (None where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def worker(library, case_name, is_tiny, torch_threads):
    """Serve ``run SECONDS`` / ``peak SIZE SECONDS`` / ``quit`` lines on stdin."""
    import numpy as np

    baseline = rss_mib("VmRSS")
    if case_name in CONV_CASES:
        step = conv_step(library, case_name, is_tiny, torch_threads)
    else:
        case = tiny(CASES[case_name]) if is_tiny else CASES[case_name]
        x, y = synthetic(case, np)
        if library in TORCH_STEPS:
            step = TORCH_STEPS[library](case, x, y, torch_threads)
        else:
            step = STEPS[library](case, x, y)
    reply({"ready": True})
    for line in sys.stdin:
        command, *args = line.split()
        if command == "run":
            reply({"steps_per_second": timed(step, float(args[0]))})
        elif command == "peak":
            reply({"gflops": peak_gflops(np, int(args[0]), float(args[1]))})
        else:
            reply({"peak_rss_mib": rss_mib("VmHWM"), "baseline_rss_mib": baseline})
            return


def reply(obj):
    print(json.dumps(obj), flush=True)


class Worker:
    """A worker process for one library and case."""

    def __init__(self, library, case_name, is_tiny, torch_threads, nnback_root=ROOT):
        self.name = f"{library} {case_name}"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", library, case_name,
               "--torch-threads", str(torch_threads)]
        if is_tiny:
            cmd.append("--tiny")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, [str(nnback_root), os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)

    def ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.read()

    def read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker {self.name} died")
        return json.loads(line)

    def close(self):
        result = self.ask("quit")
        self.proc.wait()
        return result


# --- the step benchmark ----------------------------------------------------------


def importable(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def bench_case(name, libraries, seconds, rounds, is_tiny, torch_threads, baseline=None):
    """Interleave ``rounds`` measurements of each library on one case, each round
    starting one library later, after a pause that lets the threads of the library
    measured before go idle.

    Rates are the best round's; each ratio nnback / other is the median of the ratios
    of the same round, with their minimum and maximum as its spread. ``baseline``: the
    root of another nnback checkout, timed as the library "baseline".
    """
    case = tiny(CASES[name]) if is_tiny else CASES[name]
    workers = {lib: Worker(lib, name, is_tiny, torch_threads,  # all start together
                           baseline if lib == "baseline" else ROOT)
               for lib in libraries}
    rates = {lib: [] for lib in libraries}
    peak = []
    try:
        for w in workers.values():
            w.read()  # "ready": data and model built
        for r in range(rounds):
            peak.append(workers["matmul"].ask(
                f"peak {256 if is_tiny else 2048} {0.05 if is_tiny else 0.2}")["gflops"])
            for lib in libraries[r % len(libraries):] + libraries[:r % len(libraries)]:
                time.sleep(REST)
                rates[lib].append(workers[lib].ask(f"run {seconds}")["steps_per_second"])
    finally:
        memory = {lib: w.close() for lib, w in workers.items()}
    result = {"case": name, "title": TITLES[name], "dims": list(case.dims),
              "batch": case.batch, "samples": case.samples, "flops_per_step": case.flops(),
              "peak_gflops": max(peak), "libraries": {}}
    for lib in libraries:
        best = max(rates[lib])
        result["libraries"][lib] = {
            "samples_per_second": best * case.batch,
            "rounds_samples_per_second": [r * case.batch for r in rates[lib]],
            "gflops": best * case.flops() / 1e9,
            "peak_rss_mib": memory[lib]["peak_rss_mib"],
            "baseline_rss_mib": memory[lib]["baseline_rss_mib"],
        }
    nn = result["libraries"]["nnback"]
    nn["fraction_of_peak"] = nn["gflops"] / result["peak_gflops"]
    nn["fraction_of_matmul_bound"] = (nn["samples_per_second"]
                                      / result["libraries"]["matmul"]["samples_per_second"])
    nn["expected_mib"] = case.bytes() / 2 ** 20
    for lib in libraries:
        if lib not in ("nnback", "matmul"):  # nnback against each other library and bound
            ratios = [a / b for a, b in zip(rates["nnback"], rates[lib], strict=True)]
            result["libraries"][lib].update(nnback_ratio=statistics.median(ratios),
                                            nnback_ratio_spread=[min(ratios), max(ratios)],
                                            nnback_ratio_rounds=ratios)
    return result


# --- end to end and startup ------------------------------------------------------


TRAIN_CONFIG = """\
name: bench-mnist-shaped
seed: 0
data:
  source: {data}
  split: {{val: 0.1}}
model:
  mlp: {{hidden: [256, 256], activation: relu}}
loss: softmax_cross_entropy
optimizer: {{type: sgd, lr: {lr}, momentum: {momentum}}}
train:
  epochs: {epochs}
  batch_size: 128
{extra}output:
  dir: {runs}
"""


def bare_loop(data, epochs):
    """The trainer's work without the trainer, on 90% of the rows (its train split):
    shuffled batches gathered into one buffer with ``np.take(out=)``, then the step."""
    import numpy as np

    case = CASES["mnist"]
    with np.load(data, allow_pickle=False) as f:
        x, y = f["X"], f["y"]
    n = len(x) - round(0.1 * len(x))
    x, y = x[:n], y[:n]
    parts = nnback_parts(case)
    buffer = np.empty((case.batch, x.shape[1]), np.float32)
    t0, samples = time.perf_counter(), 0
    for epoch in range(epochs):
        order = np.random.default_rng([0, epoch]).permutation(n)
        for start in range(0, n, case.batch):
            idx = order[start:start + case.batch]
            xb = np.take(x, idx, axis=0, out=buffer[:len(idx)])
            nnback_train_step(*parts, xb, y[idx])
            samples += len(idx)
    reply({"samples_per_second": samples / (time.perf_counter() - t0)})


def bench_train(rounds, is_tiny, workdir):
    """``nnback train`` (as configured by default, and with diagnostics off) against the bare
    loop on mnist-shaped synthetic data, interleaved; best of ``rounds`` each."""
    import numpy as np

    rows, epochs = (2_048, 1) if is_tiny else (60_000, 2)
    workdir = Path(workdir)
    data = workdir / "mnist-shaped.npz"
    x, y = synthetic(dataclasses.replace(CASES["mnist"], samples=rows), np)
    np.savez(data, X=x, y=y)
    del x, y
    configs = {}
    for label, extra in (("nnback train", ""),  # diagnostics every 100 steps, the default
                         ("nnback train, no diagnostics", "  diagnostics: null\n")):
        path = workdir / f"{len(configs)}.yaml"
        path.write_text(TRAIN_CONFIG.format(data=data, lr=LR, momentum=MOMENTUM, epochs=epochs,
                                            extra=extra, runs=workdir / "runs"))
        configs[label] = path
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    best = {}
    for r in range(rounds):
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--bare-loop",
                               str(data), str(epochs)], capture_output=True, text=True, env=env,
                              check=True)
        rate = json.loads(done.stdout)["samples_per_second"]
        best["bare step loop"] = max(best.get("bare step loop", 0.0), rate)
        for label, config in configs.items():
            out = workdir / f"run-{r}-{label.replace(' ', '_').replace(',', '')}"
            subprocess.run([sys.executable, "-m", "nnback.cli", "train", str(config),
                            "--out", str(out), "-q"], cwd=ROOT, env=env, check=True,
                           capture_output=True)
            last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
            best[label] = max(best.get(label, 0.0), last["samples_per_second"])
    bare = best["bare step loop"]
    return {label: {"samples_per_second": rate, "fraction_of_bare_loop": rate / bare}
            for label, rate in best.items()}


def run_seconds(cmd, cwd):
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - t0, done


def bench_startup(repeats):
    """Wall seconds (best of ``repeats``) of ``nnback --help`` and ``nnback validate``."""
    nnback = [sys.executable, "-m", "nnback.cli"]
    commands = {"nnback --help": nnback + ["--help"]}
    configs = sorted((ROOT / "config").glob("digits*.yaml"))
    if configs:
        commands[f"nnback validate config/{configs[0].name}"] = nnback + [
            "validate", str(configs[0])]
    out = {}
    for label, cmd in commands.items():
        times = []
        for _ in range(repeats):
            seconds, done = run_seconds(cmd, ROOT)
            times.append(seconds)
        out[label] = {"seconds": min(times), "exit_code": done.returncode}
    return out


# --- ConvNets ----------------------------------------------------------------------
# The shipped ConvNet configs, built from their YAML by nnback and layer by layer in
# PyTorch, one training step each (forward, loss, backward, SGD momentum) on batches
# of 64 synthetic images; "im2col GEMMs" is the bound of the step's matrix multiplies
# alone (the convolutions as im2col GEMMs, and the linear layers) on NumPy's BLAS.
# ``--convnets`` also trains the configs end to end for their accuracy and time.

CONV_CASES = {"digits-cnn": "config/digits-cnn.yaml", "lenet": "config/mnist-cnn.yaml"}
CONV_TITLES = {"digits-cnn": "digits CNN (config/digits-cnn.yaml), 1x8x8, batch 64",
               "lenet": "LeNet-5-sized (config/mnist-cnn.yaml), 1x28x28, batch 64"}
CONV_LIBRARIES = ("nnback", "im2col-gemm", "torch")
CONV_BATCH = 64


def conv_network(case_name):
    """The case's nnback model (its config's layers, float32) and the config."""
    import numpy as np

    from nnback.build import build_model
    from nnback.config import load_config

    exp = load_config(ROOT / CONV_CASES[case_name])
    shape = {"digits-cnn": (1, 8, 8), "lenet": (1, 28, 28)}[case_name]
    model = build_model(exp, int(np.prod(shape)), 10, np.random.default_rng(1), "bench", shape)
    return model, exp


def conv_images(case_name, is_tiny):
    """Gaussian float32 rows of flat images (4 or 16 batches) and uniform labels."""
    import numpy as np

    model, _ = conv_network(case_name)
    rng = np.random.default_rng(0)
    rows = (4 if is_tiny else 16) * CONV_BATCH
    x = rng.standard_normal((rows, int(np.prod(model.input_shape))), dtype=np.float32)
    return x, rng.integers(0, 10, rows)


def conv_step(library, case_name, is_tiny, torch_threads):
    """The step function of one library on one ConvNet case."""
    x, y = conv_images(case_name, is_tiny)
    if library == "torch":
        return torch_conv_step(case_name, x, y, torch_threads)
    if library == "im2col-gemm":
        return im2col_gemm_step(case_name, x)
    from nnback.losses import SoftmaxCrossEntropy
    from nnback.optim import SGD

    model, _ = conv_network(case_name)
    parts = model, SoftmaxCrossEntropy(), SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    next_batch = cycled_batches(x, y, CONV_BATCH)

    def step():
        nnback_train_step(*parts, *next_batch())
        return 1

    return step


def torch_conv_step(case_name, x, y, threads):
    """The same network in PyTorch, layer for layer."""
    import torch

    from nnback import layers as nn_layers

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model, _ = conv_network(case_name)
    modules = []
    for layer in model.layers:
        if isinstance(layer, nn_layers.Conv2d):
            modules.append(torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                           layer.stride, layer.padding, bias="b" in layer.params))
        elif isinstance(layer, nn_layers.Linear):
            modules.append(torch.nn.Linear(layer.in_features, layer.out_features))
        elif isinstance(layer, nn_layers.MaxPool2d):
            modules.append(torch.nn.MaxPool2d(layer.kernel_size, layer.stride))
        elif isinstance(layer, nn_layers.Dropout):
            modules.append(torch.nn.Dropout(layer.p))
        else:
            modules.append({"ReLU": torch.nn.ReLU, "Flatten": torch.nn.Flatten}[type(layer).__name__]())
    net = torch.nn.Sequential(*modules)
    images = torch.from_numpy(x).reshape(len(x), *model.input_shape)
    return torch_sgd_step(net, images, torch.from_numpy(y), CONV_BATCH)


def im2col_gemm_step(case_name, x):
    """The step's matrix multiplies alone, into preallocated arrays: per convolution
    W (F, K) @ cols (K, M), dW = dout (F, M) @ cols.T and, above the first layer,
    dcols = W.T @ dout, with M = N * Ho * Wo; per linear layer its three GEMMs."""
    import math

    import numpy as np

    from nnback import layers as nn_layers

    model, _ = conv_network(case_name)
    rng = np.random.default_rng(1)
    shape, products = model.input_shape, []
    for i, layer in enumerate(model.layers):
        out_shape = layer.output_shape(shape)
        if isinstance(layer, (nn_layers.Conv2d, nn_layers.Linear)):
            f = out_shape[0]
            k = layer.params["W"].size // f
            m = CONV_BATCH * math.prod(out_shape[1:])
            w, cols, dout = (rng.standard_normal(s, dtype=np.float32) for s in ((f, k), (k, m), (f, m)))
            out, dw, dcols = (np.empty(s, np.float32) for s in ((f, m), (f, k), (k, m)))
            products += [(w, cols, out), (dout, cols.T, dw)] + ([(w.T, dout, dcols)] if i else [])
        shape = out_shape

    def step():
        for a, b, out in products:
            np.matmul(a, b, out=out)
        return 1

    return step


def bench_conv_case(name, seconds, rounds, is_tiny, torch_threads):
    """Interleave ``rounds`` measurements of each library on one ConvNet case."""
    libraries = [lib for lib in CONV_LIBRARIES if lib != "torch" or importable("torch")]
    workers = {lib: Worker(lib, name, is_tiny, torch_threads) for lib in libraries}
    rates = {lib: [] for lib in libraries}
    try:
        for w in workers.values():
            w.read()
        for _ in range(rounds):
            for lib in libraries:
                rates[lib].append(workers[lib].ask(f"run {seconds}")["steps_per_second"])
    finally:
        memory = {lib: w.close() for lib, w in workers.items()}
    result = {"case": name, "title": CONV_TITLES[name], "batch": CONV_BATCH, "libraries": {}}
    for lib in libraries:
        result["libraries"][lib] = {
            "samples_per_second": max(rates[lib]) * CONV_BATCH,
            "rounds_samples_per_second": [r * CONV_BATCH for r in rates[lib]],
            "peak_rss_mib": memory[lib]["peak_rss_mib"],
        }
    if "torch" in rates:  # nnback / torch in each round: the spread of the ratio
        ratios = sorted(a / b for a, b in zip(rates["nnback"], rates["torch"], strict=True))
        result["torch_ratio"] = {"median": ratios[len(ratios) // 2], "min": ratios[0], "max": ratios[-1]}
    return result


def bench_conv_training(is_tiny, workdir):
    """Train the shipped ConvNet configs end to end (as shipped, or 2 epochs with --tiny):
    wall seconds and test accuracy; configs whose data is not here are skipped."""
    out = {}
    for name, config in CONV_CASES.items():
        _, exp = conv_network(name)
        if exp.data.source == "mnist" and not any((ROOT / "data" / "mnist").glob("*labels*")):
            out[name] = {"skipped": "data/mnist not fetched (nnback data fetch mnist)"}
            continue
        run = Path(workdir) / name
        cmd = [sys.executable, "-m", "nnback.cli", "train", config, "--out", str(run), "-q"]
        seconds, done = run_seconds(cmd + (["--set", "train.epochs=2"] if is_tiny else []), ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"{config}: training failed: {done.stderr.strip()}")
        final = json.loads((run / "summary.json").read_text())["final"]
        out[name] = {"config": config, "wall_seconds": seconds, "test_accuracy": final["test_accuracy"]}
    return out


def conv_report(seconds, rounds, is_tiny, torch_threads):
    report = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "seconds": seconds,
              "rounds": rounds, "torch_threads": torch_threads,
              "cases": [bench_conv_case(name, seconds, rounds, is_tiny, torch_threads)
                        for name in CONV_CASES]}
    with tempfile.TemporaryDirectory() as workdir:
        report["training"] = bench_conv_training(is_tiny, workdir)
    return report


def format_conv_report(report):
    """The ConvNet tables as Markdown."""
    m = report["machine"]
    lines = [f"{report['date']}, {m.get('cpu', '?')}, {m['cpus']} cores, numpy {m['numpy']}, "
             f"{m.get('blas', 'BLAS unknown')}; torch with {report['torch_threads']} threads; "
             f"best of {report['rounds']} interleaved rounds of {report['seconds']:g} s", "",
             "| case | nnback samples/s | PyTorch samples/s | nnback / PyTorch, median (range) of rounds "
             "| im2col GEMMs alone samples/s | peak RSS MiB nnback / PyTorch |",
             "|---|---|---|---|---|---|"]
    for case in report["cases"]:
        r = case["libraries"]
        torch = r.get("torch")
        ratio = case.get("torch_ratio")
        lines.append("| " + " | ".join([
            case["title"], rate(r["nnback"]["samples_per_second"]),
            rate(torch["samples_per_second"]) if torch else "-",
            f"{ratio['median']:.2f}× ({ratio['min']:.2f}–{ratio['max']:.2f})" if ratio else "-",
            rate(r["im2col-gemm"]["samples_per_second"]),
            f"{r['nnback']['peak_rss_mib']:.0f} / {torch['peak_rss_mib']:.0f}" if torch
            else f"{r['nnback']['peak_rss_mib']:.0f}"]) + " |")
    lines += ["", "| config | trained | test accuracy |", "|---|---|---|"]
    for name, result in report["training"].items():
        if "skipped" in result:
            lines.append(f"| {CONV_CASES[name]} | not run: {result['skipped']} | - |")
        else:
            lines.append(f"| {result['config']} | {result['wall_seconds']:.1f} s | "
                         f"{100 * result['test_accuracy']:.2f}% |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="seconds per measurement (one library, one round)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds per case: best round's rates, median ratios")
    parser.add_argument("--against", action="append", default=[], choices=["torch", "sklearn"],
                        help="also run this library (skipped when not installed)")
    parser.add_argument("--baseline", metavar="PATH",
                        help="also time the nnback of another checkout (its root folder), "
                             "to measure a change before and after")
    parser.add_argument("--torch-threads", type=int, default=2,
                        help="torch.set_num_threads for PyTorch (default: the 2 cores)")
    parser.add_argument("--train", action="store_true",
                        help="time `nnback train` against the bare step loop (mnist-shaped)")
    parser.add_argument("--startup", action="store_true",
                        help="time `nnback --help` and `nnback validate`")
    parser.add_argument("--convnets", action="store_true",
                        help="the ConvNet cases instead (against PyTorch if installed), and the "
                             "shipped ConvNet configs trained end to end")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--worker", nargs=2, metavar=("LIBRARY", "CASE"), help=argparse.SUPPRESS)
    parser.add_argument("--bare-loop", nargs=2, metavar=("NPZ", "EPOCHS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(*args.worker, args.tiny, args.torch_threads)
    if args.bare_loop:
        return bare_loop(args.bare_loop[0], int(args.bare_loop[1]))
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if args.tiny:
        args.seconds, args.rounds = min(args.seconds, 0.05), 1
    if args.convnets:
        report = conv_report(args.seconds, args.rounds, args.tiny, args.torch_threads)
        print(json.dumps(report, indent=2) if args.json else format_conv_report(report))
        return 0
    skipped = [lib for lib in dict.fromkeys(args.against) if not importable(lib)]
    libraries = (["nnback", "handwritten"] + (["baseline"] if args.baseline else []) + ["matmul"]
                 + [lib for lib in dict.fromkeys(args.against) if lib not in skipped])
    if "torch" in libraries:
        libraries.append("torch-matmul")
    report = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "skipped": skipped,
              "seconds": args.seconds, "rounds": args.rounds,
              "torch_threads": args.torch_threads,
              "baseline": args.baseline,
              "cases": [bench_case(c, libraries, args.seconds, args.rounds, args.tiny,
                                   args.torch_threads, args.baseline) for c in cases]}
    if args.train:
        with tempfile.TemporaryDirectory() as workdir:
            report["train"] = bench_train(args.rounds, args.tiny, workdir)
    if args.startup:
        report["startup"] = bench_startup(1 if args.tiny else 5)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


def machine():
    """CPU model, core count, numpy version and the BLAS numpy runs (with its kernel)."""
    import numpy as np

    info = {"cpus": os.cpu_count(), "numpy": np.__version__, "python": sys.version.split()[0]}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return info
    # numpy's own BLAS: importing scikit-learn loads SciPy's as well.
    pools = sorted((p for p in threadpool_info() if p.get("user_api") == "blas"),
                   key=lambda p: "numpy" not in p.get("filepath", ""))
    if pools:
        pool = pools[0]
        info["blas"] = (f"{pool.get('internal_api')} {pool.get('version')} "
                        f"{pool.get('architecture')}, {pool.get('num_threads')} threads")
    return info


def format_report(report):
    """The tables as Markdown."""
    m = report["machine"]
    lines = [f"{report['date']}, {m.get('cpu', '?')}, {m['cpus']} cores, numpy {m['numpy']}, "
             f"{m.get('blas', 'BLAS unknown')}; torch with {report['torch_threads']} threads; "
             f"{report['rounds']} interleaved rounds of {report['seconds']:g} s; samples/s "
             f"of the best round; nnback × other: median of the same-round ratios "
             f"(min-max)", ""]
    libs = list(report["cases"][0]["libraries"]) if report["cases"] else []
    others = [lib for lib in libs if lib not in ("nnback", *BOUNDS)]
    bounds = [lib for lib in BOUNDS if lib in libs]
    head = ["case", "nnback samples/s", "GFLOP/s", "% of GEMM peak", "% of matmul bound",
            "peak RSS MiB (budget)"]
    head += [f"{LABELS[lib]} samples/s (nnback ×)" for lib in others]
    head += [f"matmul alone, {BLAS_NAMES[lib]} samples/s" for lib in bounds]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in report["cases"]:
        r = case["libraries"]
        nn = r["nnback"]
        row = [case["title"], rate(nn["samples_per_second"]), f"{nn['gflops']:.0f}",
               f"{100 * nn['fraction_of_peak']:.0f}%",
               f"{100 * nn['fraction_of_matmul_bound']:.0f}%",
               f"{nn['peak_rss_mib']:.0f} ({nn['expected_mib'] + nn['baseline_rss_mib']:.0f})"]
        row += [f"{rate(r[lib]['samples_per_second'])} ({ratio(r[lib])})" for lib in others]
        row += [rate(r[lib]["samples_per_second"]) for lib in bounds]
        lines.append("| " + " | ".join(row) + " |")
    if report["skipped"]:
        lines += ["", "not installed, skipped: " + ", ".join(report["skipped"])]
    if "train" in report:
        lines += ["", "| mnist-shaped, end to end | samples/s | of the bare step loop |",
                  "|---|---|---|"]
        lines += [f"| {label} | {rate(v['samples_per_second'])} | "
                  f"{100 * v['fraction_of_bare_loop']:.0f}% |"
                  for label, v in report["train"].items()]
    if report.get("startup"):
        lines.append("")
    for label, value in report.get("startup", {}).items():
        lines.append(f"{label}: {value['seconds']:.2f} s (exit {value['exit_code']})")
    return "\n".join(lines)


def ratio(result):
    """``0.97× (0.95-0.99)``: the median ratio of the rounds and its spread."""
    low, high = result["nnback_ratio_spread"]
    return f"{result['nnback_ratio']:.2f}× ({low:.2f}-{high:.2f})"


def rate(samples_per_second):
    if samples_per_second >= 1e6:
        return f"{samples_per_second / 1e6:.2f} M"
    return f"{samples_per_second / 1e3:.1f} k"


if __name__ == "__main__":
    sys.exit(main())
