"""How many BLAS threads training uses.

A second thread speeds up a matrix product only when the product is large enough to
split, and only when a core is free to run it: on a shared machine, BLAS threads that
wait for a busy core make small networks several times slower. So the automatic choice
is one thread unless the step's largest product has at least ``PARALLEL_WORK``
multiply-adds, and then the cores that are idle right now (measured over a tenth of a
second), never more than BLAS would use by itself. ``train.threads`` or ``--threads``
sets the count instead. A resumed run keeps the count it started with, so it continues
with the same numbers (the rounding of a split product can depend on the split).
"""

from __future__ import annotations

import contextlib
import os
import time

from threadpoolctl import threadpool_info, threadpool_limits

# Multiply-adds in one product from which a second BLAS thread pays for itself: the
# digits network's largest product (64 x 64 x 128) is 0.5 M, mnist-shaped (128 x 784 x
# 256) 26 M.
PARALLEL_WORK = 1 << 23
IDLE_SAMPLE_SECONDS = 0.1


def largest_product(model, batch: int) -> int:
    """Multiply-adds of the largest matrix product in a training step of ``batch`` rows:
    ``batch x D_in x D_out`` of a weight matrix, ``F x K x (batch x positions)`` of a
    convolution's im2col product (F filters of K values each, applied at every position
    of every image)."""
    products = [0]
    shape = model.input_shape  # one sample's shape as each layer takes it, for images
    for layer in model.layers:
        weight = layer.params.get("W")
        if weight is not None and weight.ndim == 2:
            products.append(batch * weight.shape[0] * weight.shape[1])
        elif weight is not None and weight.ndim == 4 and shape is not None:
            patch, columns = layer.columns_shape(shape, batch)
            products.append(weight.shape[0] * patch * columns)
        shape = None if shape is None else layer.output_shape(shape)
    return max(products)


def blas_limit() -> int:
    """The threads BLAS would use by itself (its configured or default count)."""
    counts = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return max(counts, default=1)


def idle_cores(seconds: float = IDLE_SAMPLE_SECONDS) -> float | None:
    """Cores left idle by every process over the next ``seconds`` (this one sleeps);
    None where ``/proc/stat`` cannot be read."""

    def busy_and_total():
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(t) for t in f.readline().split()[1:]]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
        return sum(ticks) - idle, sum(ticks)

    try:
        busy0, total0 = busy_and_total()
        time.sleep(seconds)
        busy1, total1 = busy_and_total()
    except (OSError, ValueError, IndexError):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if total1 <= total0:
        return None
    return cores * (1 - (busy1 - busy0) / (total1 - total0))


def choose_threads(model, batch: int) -> int:
    """The automatic thread count for training ``model`` on batches of ``batch`` rows."""
    limit = blas_limit()
    if limit == 1 or largest_product(model, batch) < PARALLEL_WORK:
        return 1
    idle = idle_cores()
    if idle is None:
        return limit
    return max(1, min(limit, round(idle)))


@contextlib.contextmanager
def blas_threads(count: int):
    """Run the block with BLAS limited to ``count`` threads."""
    with threadpool_limits(limits=count, user_api="blas"):
        yield
