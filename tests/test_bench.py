"""scripts/bench.py runs and reports what it promises. No timing is asserted."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


def run(*args):
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def tiny_report():
    return json.loads(run("--json"))


@pytest.fixture(scope="module")
def compared_report():
    return json.loads(run("--json", "--cases", "digits", "--against", "torch",
                          "--against", "sklearn", "--baseline", str(SCRIPT.parent.parent)))


def assert_ratio(case, lib):
    """The library's ratio is nnback's rate over its own, round by round, with its spread."""
    result, nnback = case["libraries"][lib], case["libraries"]["nnback"]
    ratios = [a / b for a, b in zip(nnback["rounds_samples_per_second"],
                                    result["rounds_samples_per_second"], strict=True)]
    assert result["nnback_ratio_rounds"] == pytest.approx(ratios)
    low, high = result["nnback_ratio_spread"]
    assert low <= result["nnback_ratio"] <= high
    assert (low, high) == pytest.approx((min(ratios), max(ratios)))


def test_every_case_reports_nnback_and_the_matmul_bound(tiny_report):
    bench = load_bench()
    assert [c["case"] for c in tiny_report["cases"]] == list(bench.CASES)
    for case in tiny_report["cases"]:
        assert case["flops_per_step"] == bench.CASES[case["case"]].flops()
        assert case["peak_gflops"] > 0
        nn = case["libraries"]["nnback"]
        for key in ("samples_per_second", "gflops", "peak_rss_mib", "baseline_rss_mib",
                    "fraction_of_peak", "fraction_of_matmul_bound", "expected_mib"):
            assert nn[key] > 0, key
        assert len(nn["rounds_samples_per_second"]) == tiny_report["rounds"] == 1
        assert case["libraries"]["matmul"]["samples_per_second"] > 0
        assert_ratio(case, "handwritten")


def test_other_libraries_are_compared_or_named_as_skipped(compared_report):
    for lib in ("torch", "sklearn", "torch-matmul", "baseline"):  # torch-matmul: PyTorch's BLAS
        for case in compared_report["cases"]:
            if lib.split("-")[0] in compared_report["skipped"]:
                assert lib not in case["libraries"]
            else:
                assert case["libraries"][lib]["samples_per_second"] > 0
                assert_ratio(case, lib)


def test_hand_written_step_does_nnbacks_arithmetic_bit_for_bit():
    """The reference is the same work: from the same weights and batches it reaches the
    same parameters as nnback's step, to the last bit."""
    import numpy as np

    bench = load_bench()
    case = bench.Case((4, 8, 6, 3), batch=5, samples=15)
    x, y = bench.synthetic(case, np)
    hand = bench.handwritten_step(case, x, y)
    model, loss_fn, opt = bench.nnback_parts(case)
    np.testing.assert_array_equal(hand.flat_params, model.flat_params)
    next_batch = bench.cycled_batches(x, y, case.batch)
    for _ in range(4):  # the momentum's first step, then the steady update; batches cycle
        hand()
        bench.nnback_train_step(model, loss_fn, opt, *next_batch())
        np.testing.assert_array_equal(hand.flat_params, model.flat_params)


def test_report_names_the_machine(tiny_report):
    machine = tiny_report["machine"]
    assert machine["cpus"] >= 1 and machine["numpy"]
    assert tiny_report["date"].count("-") == 2


def test_markdown_table_has_a_row_per_requested_case():
    text = run("--cases", "digits,spiral")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| case | nnback samples/s | GFLOP/s")
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| digits 64-128-10, batch 64",
                                                     "| spiral 2-100-3, batch 300"]


def test_end_to_end_and_startup_sections():
    report = json.loads(run("--json", "--cases", "spiral", "--train", "--startup"))
    train = report["train"]
    assert set(train) == {"bare step loop", "nnback train",
                          "nnback train, no diagnostics"}
    assert train["bare step loop"]["fraction_of_bare_loop"] == 1.0
    assert all(v["samples_per_second"] > 0 for v in train.values())
    assert "nnback --help" in report["startup"]
    assert all(v["seconds"] > 0 for v in report["startup"].values())


def test_unknown_case_is_a_usage_error():
    done = subprocess.run([sys.executable, str(SCRIPT), "--cases", "nope"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "unknown case(s) nope" in done.stderr


def test_flops_count_three_products_per_layer_but_no_input_gradient():
    case = load_bench().Case((4, 3, 2), batch=5, samples=10)
    assert case.flops() == 2 * 5 * (3 * (4 * 3 + 3 * 2) - 4 * 3)


def test_convnet_cases_report_nnback_the_gemm_bound_and_training():
    report = json.loads(run("--json", "--convnets"))
    bench = load_bench()
    assert [c["case"] for c in report["cases"]] == list(bench.CONV_CASES)
    for case in report["cases"]:
        for lib in ("nnback", "im2col-gemm"):
            assert case["libraries"][lib]["samples_per_second"] > 0, lib
        assert case["libraries"]["nnback"]["peak_rss_mib"] > 0
        if "torch" in case["libraries"]:
            assert case["torch_ratio"]["min"] <= case["torch_ratio"]["median"] <= case["torch_ratio"]["max"]
    digits = report["training"]["digits-cnn"]
    assert digits["wall_seconds"] > 0 and 0 <= digits["test_accuracy"] <= 1


def test_trainer_benchmark_reports_the_trainer_against_the_bare_step_and_loop():
    """scripts/bench_trainer.py runs ``Trainer.fit`` and the bare loops it is measured against."""
    args = ["--cases", "spiral,digits", "--rounds", "2", "--seconds", "0.01", "--rows", "1200"]
    done = subprocess.run([sys.executable, str(SCRIPT.parent / "bench_trainer.py"), *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    header, rule, *rows = done.stdout.splitlines()
    assert header.split(" | ")[-2:] == ["trainer / bare step", "trainer / bare loop |"]
    assert [row.split(" | ")[0] for row in rows] == ["| spiral", "| digits"]
    for row in rows:
        for cell in row.strip("| ").split(" | ")[4:]:
            median, spread = cell.split(" (")
            low, high = map(float, spread.rstrip(")").split("-"))
            assert 0 < low - 0.005 <= float(median) <= high + 0.005  # as printed: 2 and 3 decimals
