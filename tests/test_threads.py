"""BLAS threads: one for small products, the idle cores for large ones, or as set; the
count is applied while training, recorded in summary.json and kept by a resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from threadpoolctl import threadpool_info
from typer.testing import CliRunner

from nnback.cli import app
from nnback.errors import EXIT_SIGTERM
from nnback.layers import Linear, ReLU
from nnback.model import Sequential
from nnback.train import threads
from nnback.train.trainer import Trainer


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def network(*dims):
    rng = np.random.default_rng(0)
    layers = []
    for a, b in zip(dims[:-1], dims[1:], strict=False):
        layers += [Linear(a, b, rng=rng), ReLU()]
    return Sequential(layers[:-1])


def test_largest_product_is_batch_times_the_largest_weight_matrix():
    assert threads.largest_product(network(64, 128, 10), 64) == 64 * 64 * 128


@pytest.mark.parametrize("dims, batch, idle, want", [
    ((64, 128, 10), 64, 2.0, 1),  # digits: small products, one thread even on an idle machine
    ((784, 1024, 1024, 10), 512, 2.0, 2),  # wide and idle: every core BLAS would use
    ((784, 1024, 1024, 10), 512, 1.1, 1),  # wide with one core busy elsewhere
    ((784, 1024, 1024, 10), 512, 0.0, 1),
    ((784, 1024, 1024, 10), 512, 7.0, 2),  # never more than BLAS's own count
])
def test_the_automatic_choice(monkeypatch, dims, batch, idle, want):
    sampled = []
    monkeypatch.setattr(threads, "blas_limit", lambda: 2)
    monkeypatch.setattr(threads, "idle_cores", lambda: sampled.append(idle) or idle)
    assert threads.choose_threads(network(*dims), batch) == want
    assert bool(sampled) == (batch * dims[1] * dims[2] >= threads.PARALLEL_WORK)


def test_idle_cores_is_a_fraction_of_the_cores():
    idle = threads.idle_cores(0.02)
    assert idle is None or 0.0 <= idle <= threads.os.cpu_count()


def test_the_count_is_applied_recorded_and_kept_by_a_resume(write_config, tmp_path, monkeypatch):
    cfg = write_config({"train": {"epochs": 6, "threads": 2}})
    run = tmp_path / "run"
    seen = []
    fit = Trainer.fit

    def recording_fit(self):
        seen.append(max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"))
        if len(seen) == 1:
            self.stop_reason = "SIGTERM"  # stops after the first step
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", recording_fit)
    assert invoke("train", cfg, "--out", run, "--threads", "1", "-q").exit_code == EXIT_SIGTERM
    assert json.loads((run / "summary.json").read_text())["blas_threads"] == 1
    # The resumed run keeps its count unless told otherwise: train.threads is run control.
    write_config({"train": {"epochs": 6}})
    done = invoke("train", cfg, "--out", run, "--resume", "-q")
    assert done.exit_code == 0, done.output
    assert seen == [1, 1]
    assert json.loads((run / "summary.json").read_text())["blas_threads"] == 1


def test_a_convolutions_im2col_product_counts():
    """A ConvNet whose convolution does the most work, with a small linear head: the
    filters (F x K) times the columns (K x every position of every image) decide."""
    from nnback.layers import Conv2d, GlobalAvgPool2d

    rng = np.random.default_rng(0)
    layers = [Conv2d(1, 32, 3, padding=1, rng=rng), ReLU(), GlobalAvgPool2d(), Linear(32, 10, rng=rng)]
    model = Sequential(layers, input_shape=(1, 28, 28))
    product = threads.largest_product(model, 128)
    assert 32 * 9 * 128 * 28 * 28 <= product <= 32 * 9 * 128 * 28 * 30  # at most a spare column per row
    assert 128 * 32 * 10 < threads.PARALLEL_WORK < product
