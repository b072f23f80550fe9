import math

import numpy as np
import pytest

from nnback.layers import GELU, Linear, ReLU, Sigmoid, Tanh
from nnback.losses import SoftmaxCrossEntropy
from nnback.model import Sequential
from nnback.optim import SGD
from nnback.runfolder.jsonl import read_jsonl
from nnback.train.diagnostics import (
    DiagnosticsRecorder,
    ProblemTracker,
    Thresholds,
    activation_stats,
    depth_ratio,
    layer_stats,
    norm,
    parameter_stats,
)


def traced_step(model, x, y, loss_fn):
    """Forward and backward through ``model`` with traces, as the trainer's recorded steps.

    Returns:
        trace_f: outputs of layers 0..L-1; trace_b: dx of layers L-1..0.
    """
    trace_f, trace_b = [], []
    _, dscores = loss_fn(model.forward(x, True, trace=trace_f), y)
    model.backward(dscores, trace=trace_b)
    return trace_f, trace_b


def mlp(rng, hidden=8, activation=ReLU, depth=1):
    layers, width = [], 4
    for _ in range(depth):
        layers += [Linear(width, hidden, dtype=np.float64, rng=rng), activation()]
        width = hidden
    return Sequential(layers + [Linear(width, 3, dtype=np.float64, rng=rng)])


def train_recorded(model, recorder, steps, lr, rng):
    """SGD on a fixed batch, recording on due steps as the trainer does."""
    x = rng.normal(size=(16, 4))
    y = rng.integers(0, 3, size=16)
    loss_fn = SoftmaxCrossEntropy()
    optimizer = SGD(model.parameters(), lr=lr)
    for step in range(1, steps + 1):
        trace_f, trace_b = traced_step(model, x, y, loss_fn)
        if recorder.due(step):
            recorder.before_update(model)
            optimizer.step()
            recorder.after_update(step, 1, model, trace_f, trace_b, lr)
        else:
            optimizer.step()


def test_relu_dead_units_are_the_all_zero_columns():
    out = np.array([[0.0, 1.0, 0.0, 2.0, 0.0, 0.0],
                    [0.0, 0.0, 0.0, 3.0, 4.0, 0.0],
                    [0.0, 0.5, 0.0, 0.0, 0.0, 0.0]])
    stats = activation_stats(ReLU(), out)
    assert stats["dead"] == pytest.approx(3 / 6)  # units 0, 2 and 5
    assert stats["mean"] == pytest.approx(out.mean())
    assert stats["std"] == pytest.approx(out.std(), rel=1e-5)  # 6 significant digits
    assert "saturated" not in stats


def test_relu_dead_units_through_a_linear_layer():
    rng = np.random.default_rng(0)
    linear = Linear(4, 6, dtype=np.float64, rng=rng)
    linear.params["W"][:, [1, 4]] = 0.0
    linear.params["b"][[1, 4]] = -1.0  # these two units are negative for any input
    relu = ReLU()
    out = relu.forward(linear.forward(rng.normal(size=(64, 4))))
    assert activation_stats(relu, out)["dead"] == pytest.approx(2 / 6)


def test_sigmoid_fed_large_inputs_is_saturated():
    layer = Sigmoid()
    big = np.array([[-30.0, 12.0], [8.0, -6.0]])
    assert activation_stats(layer, layer.forward(big))["saturated"] == 1.0
    small = np.array([[-2.0, 0.5], [1.0, 4.5]])  # sigmoid(4.5) = 0.989 is not saturated
    assert activation_stats(layer, layer.forward(small))["saturated"] == 0.0


def test_tanh_saturation_counts_outputs_beyond_099():
    layer = Tanh()
    x = np.array([[3.0, -3.0, 0.1, 2.0]])  # tanh(3) = 0.995, tanh(2) = 0.964
    assert activation_stats(layer, layer.forward(x))["saturated"] == 0.5


def test_non_relu_activations_report_mean_and_std_only():
    out = GELU().forward(np.linspace(-2, 2, 12).reshape(3, 4))
    assert set(activation_stats(GELU(), out)) == {"mean", "std"}
    assert activation_stats(Linear(2, 2, rng=np.random.default_rng(0)), out) == {}


def test_sgd_update_ratio_is_lr_times_gradient_over_weight_norm():
    model = Sequential([Linear(2, 2, dtype=np.float64, rng=np.random.default_rng(0))])
    model[0].params["W"][...] = [[3.0, 0.0], [0.0, 4.0]]  # ||W|| = 5
    model[0].grads["W"][...] = [[1.0, 2.0], [2.0, 4.0]]  # ||dW|| = 5
    model[0].grads["b"][...] = [1.0, 1.0]
    before = model.flat_params.copy()
    SGD(model.parameters(), lr=0.01).step()
    stats = parameter_stats(model, before)
    assert stats["0.W"]["update_ratio"] == pytest.approx(0.01 * 5 / 5)
    assert stats["0.W"]["grad_norm"] == pytest.approx(5.0)
    assert stats["0.W"]["weight_norm"] == pytest.approx(norm(model[0].params["W"]))
    assert stats["0.W"]["matrix"] is True
    assert stats["0.b"]["update_ratio"] is None  # the bias started at zero
    assert stats["0.b"]["matrix"] is False


def test_layer_stats_take_dx_of_each_layer_from_the_reversed_trace():
    rng = np.random.default_rng(1)
    model = mlp(rng, depth=2)
    trace_f, trace_b = traced_step(model, rng.normal(size=(8, 4)), rng.integers(0, 3, 8),
                                   SoftmaxCrossEntropy())
    rows = layer_stats(model, trace_f, trace_b)
    assert [r["type"] for r in rows] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    for i, row in enumerate(rows):
        assert row["dx_norm"] == pytest.approx(np.linalg.norm(trace_b[len(rows) - 1 - i]), rel=1e-5)
    assert depth_ratio(rows) == pytest.approx(rows[1]["dx_norm"] / rows[-1]["dx_norm"], rel=1e-5)
    assert depth_ratio(rows[:2]) is None


def test_recorder_writes_one_record_per_due_step(tmp_path):
    rng = np.random.default_rng(2)
    model = mlp(rng)
    recorder = DiagnosticsRecorder(tmp_path / "diagnostics.jsonl", every=5)
    train_recorded(model, recorder, steps=23, lr=0.05, rng=rng)
    recorder.close()
    records = read_jsonl(tmp_path / "diagnostics.jsonl")
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    assert set(records[0]["params"]) == {"0.W", "0.b", "2.W", "2.b"}
    assert records[0]["lr"] == 0.05
    assert [layer["type"] for layer in records[0]["layers"]] == ["Linear", "ReLU", "Linear"]
    assert 0 < records[-1]["params"]["0.W"]["update_ratio"] < 1
    assert records[-1]["depth_ratio"] > 0


def test_recorder_due_counts_one_based_steps(tmp_path):
    recorder = DiagnosticsRecorder(tmp_path / "d.jsonl", every=100)
    assert [s for s in range(1, 401) if recorder.due(s)] == [100, 200, 300, 400]
    recorder.close()
    with pytest.raises(ValueError, match="every"):
        DiagnosticsRecorder(tmp_path / "d.jsonl", every=0)


def test_huge_learning_rate_warns_once_about_update_ratio(tmp_path):
    rng = np.random.default_rng(3)
    warnings = []
    recorder = DiagnosticsRecorder(tmp_path / "d.jsonl", every=1, warn=warnings.append)
    train_recorded(mlp(rng), recorder, steps=10, lr=50.0, rng=rng)
    recorder.close()
    high = [w for w in warnings if "update/weight ratio" in w and "too high" in w]
    assert {w.split(":")[1].strip() for w in high} <= {"0.W", "2.W"}
    assert len(high) == len(set(high)) >= 1
    assert high[0].startswith("step 3: ")  # after 3 records in a row, not before


def test_healthy_training_stays_quiet(tmp_path):
    rng = np.random.default_rng(4)
    warnings = []
    recorder = DiagnosticsRecorder(tmp_path / "d.jsonl", every=2, warn=warnings.append)
    train_recorded(mlp(rng, hidden=16), recorder, steps=40, lr=0.05, rng=rng)
    recorder.close()
    assert warnings == []


def record(step, dead=0.0, ratio=1e-3, depth=0.5, lr=0.1):
    return {"step": step, "lr": lr,
            "params": {"0.W": {"update_ratio": ratio, "matrix": True},
                       "0.b": {"update_ratio": 10.0, "matrix": False}},
            "layers": [{"layer": 0, "type": "Linear"}, {"layer": 1, "type": "ReLU", "dead": dead},
                       {"layer": 2, "type": "Linear"}],
            "depth_ratio": depth}


def test_a_pattern_must_persist_before_it_warns():
    tracker = ProblemTracker(Thresholds(persist=3))
    dead = [0.6, 0.7, 0.1, 0.6, 0.6, 0.9, 0.8, 0.8]
    warned = [tracker.update(record(10 * (i + 1), dead=d)) for i, d in enumerate(dead)]
    assert [len(w) for w in warned] == [0, 0, 0, 0, 0, 1, 0, 0]
    assert warned[5] == ["step 60: layer 1 (ReLU): 90% of units dead (zero for every sample of the batch)"]
    problem = tracker.problems["dead", "layer 1 (ReLU)"]
    assert (problem.first_step, problem.records, problem.worst, problem.worst_step) == (10, 7, 0.9, 60)


def test_vanishing_and_exploding_depth_profiles_warn():
    tracker = ProblemTracker(Thresholds(persist=1))
    assert tracker.update(record(1, depth=1e-4)) == [
        "step 1: network: gradient vanishes through depth: the first layer gets 1.0e-04 times "
        "the gradient the last layer passes back"]
    assert "explodes" in tracker.update(record(2, depth=1e4))[0]
    assert tracker.update(record(3, depth=1.0)) == []


def test_low_update_ratio_is_not_reported_while_the_schedule_anneals():
    tracker = ProblemTracker(Thresholds(persist=1))
    assert tracker.update(record(1, ratio=1e-3, lr=1.0)) == []
    assert tracker.update(record(2, ratio=1e-7, lr=0.01)) == []  # lr is 1% of its peak
    assert "too low" in tracker.update(record(3, ratio=1e-7, lr=0.5))[0]


def test_bias_ratios_never_warn():
    tracker = ProblemTracker(Thresholds(persist=1))
    assert tracker.find(record(1)) == {}
    assert math.isclose(tracker.find(record(1, ratio=0.5))["ratio_high", "0.W"], 0.5)


def test_a_stalled_network_is_named_as_such():
    tracker = ProblemTracker(Thresholds(persist=1))
    assert tracker.update(record(1, ratio=0.0, depth=0.0)) == [
        "step 1: 0.W: not updated at all, its gradient is zero (dead units above it?)",
        "step 1: network: no gradient reaches the first layer (dead units above it?)"]


def test_after_update_needs_before_update(tmp_path):
    rng = np.random.default_rng(5)
    model = mlp(rng)
    trace_f, trace_b = traced_step(model, rng.normal(size=(4, 4)), rng.integers(0, 3, 4),
                                   SoftmaxCrossEntropy())
    recorder = DiagnosticsRecorder(tmp_path / "d.jsonl")
    with pytest.raises(RuntimeError, match="without before_update"):
        recorder.after_update(100, 1, model, trace_f, trace_b, 0.1)
    recorder.close()


def test_relu_dead_units_of_feature_maps_are_channels():
    out = np.ones((4, 3, 5, 5))
    out[:, 1] = 0  # a dead channel
    out[:, 2] = 0
    out[2, 2, 4, 4] = 1.0  # alive: one pixel of one sample fires
    assert activation_stats(ReLU(), out)["dead"] == pytest.approx(1 / 3)


def test_convolution_kernels_count_as_weight_matrices():
    from nnback.layers import Conv2d, Flatten

    rng = np.random.default_rng(0)
    model = Sequential([Conv2d(1, 2, 3, rng=rng), Flatten(), Linear(8, 2, rng=rng)], input_shape=(1, 4, 3))
    stats = parameter_stats(model, model.flat_params.copy())
    assert {name: s["matrix"] for name, s in stats.items()} == {
        "0.W": True, "0.b": False, "2.W": True, "2.b": False}
