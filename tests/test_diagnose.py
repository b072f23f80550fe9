import json

import numpy as np
import pytest
import yaml
from test_diagnostics import mlp, record, train_recorded
from test_plot import diagnostics_records, with_diagnostics

from nnback.commands.diagnose import diagnose_run, summary_rows, warnings_text
from nnback.errors import NnbackError
from nnback.layers import Linear, Sigmoid
from nnback.model import Sequential
from nnback.train.diagnostics import DiagnosticsRecorder, Thresholds


def test_summary_rows_give_first_last_and_worst_per_place():
    records = diagnostics_records(steps=(10, 20, 40))
    records[1]["params"]["0.W"]["update_ratio"] = 0.5  # the furthest from 1e-3
    records[2]["layers"][1]["dead"] = 0.4
    params, layers = summary_rows(records)
    assert ["0.W", "update ratio", "0.001", "0.001", "0.5", "20"] in params
    assert ["0.W", "grad norm", "0.1", "0.025", "0.1", "10"] in params
    assert ["1 ReLU", "dead", "0.1", "0.4", "0.4", "40"] in layers
    assert ["1 ReLU", "mean", "0.3", "0.3", "", ""] in layers
    assert ["network", "depth ratio", "0.5", "0.5", "0.5", "10"] in layers
    assert not any(row[0] == "0.b" and row[1] == "update ratio" for row in params)  # never measured


def test_warnings_are_explained_in_plain_words():
    records = [record(10 * i, dead=0.8) for i in range(1, 5)]
    lines = warnings_text(records, Thresholds(persist=3))
    assert lines[0] == "- layer 1 (ReLU): 80% of units dead (zero for every sample of the batch)"
    assert lines[1] == "  first seen at step 10, in 4 of 4 records, worst at step 10."
    assert "can never recover" in lines[2] and "leaky_relu" in lines[2]


def test_brief_patterns_are_listed_but_not_explained():
    records = [record(1, ratio=0.5), record(2), record(3)]
    lines = warnings_text(records, Thresholds(persist=3))
    assert lines == ["Seen in fewer than 3 records in a row (not warned about):",
                     "- step 1: 0.W: update/weight ratio 5.0e-01 (healthy is about 1e-03): steps are "
                     "large next to the weights; the learning rate may be too high"]


def test_diagnose_a_run_with_saturated_sigmoids(tmp_path):
    rng = np.random.default_rng(0)
    model = Sequential([Linear(4, 16, dtype=np.float64, rng=rng), Sigmoid(),
                        Linear(16, 3, dtype=np.float64, rng=rng)])
    model[0].params["W"] *= 40  # large pre-activations: the sigmoids sit in their flat tails
    recorder = DiagnosticsRecorder(tmp_path / "diagnostics.jsonl", every=2)
    train_recorded(model, recorder, steps=10, lr=0.01, rng=rng)
    recorder.close()
    report = diagnose_run(tmp_path)
    assert report.startswith(f"{tmp_path}: 5 gradient-flow records, steps 2-10")
    assert "- layer 1 (Sigmoid): " in report and "of outputs saturated" in report
    assert "flat tails of the" in report
    saturated = [line.split() for line in report.splitlines() if line.startswith("1 Sigmoid  saturated")]
    assert len(saturated) == 1 and float(saturated[0][3]) > 0.8


def test_diagnose_a_healthy_run_says_so(tmp_path):
    rng = np.random.default_rng(1)
    recorder = DiagnosticsRecorder(tmp_path / "diagnostics.jsonl", every=5)
    train_recorded(mlp(rng, hidden=16), recorder, steps=30, lr=0.05, rng=rng)
    recorder.close()
    report = diagnose_run(tmp_path)
    assert report.endswith("No warnings: update ratios in range, no layer mostly dead or saturated, "
                           "and the gradient keeps its size through depth.")
    assert "0.W        update ratio" in report


def saved_run(folder, diagnostics, steps):
    """A run folder's config.yaml and summary.json, as the trainer writes them."""
    train = {"epochs": 2, "batch_size": 16, "diagnostics": diagnostics}
    (folder / "config.yaml").write_text(yaml.safe_dump({"name": "tiny", "train": train}))
    (folder / "summary.json").write_text(json.dumps({"status": "completed", "steps": steps}))


def test_diagnose_without_records_says_why(tmp_path):
    with pytest.raises(NnbackError, match=r"no gradient-flow records: diagnostics are recorded by nnback "
                                          r"train \(train.diagnostics.every, default 100 steps\)"):
        diagnose_run(tmp_path)
    saved_run(tmp_path, {"every": 100}, steps=12)
    for records in (None, []):  # no file, or a file without records
        if records is not None:
            with_diagnostics(tmp_path, records)
        with pytest.raises(NnbackError) as error:
            diagnose_run(tmp_path)
        assert str(error.value) == (
            f"{tmp_path}: no gradient-flow records: diagnostics are recorded every 100 steps "
            f"(train.diagnostics.every) and the run took 12 steps; set train.diagnostics.every to 1 "
            f"(or another value below 12) and train again")
    saved_run(tmp_path, None, steps=500)
    with pytest.raises(NnbackError, match=r"diagnostics were off in this run \(train.diagnostics: null\)"):
        diagnose_run(tmp_path)
    saved_run(tmp_path, {"every": 50}, steps=None)
    (tmp_path / "summary.json").unlink()  # still running, before its first record
    with pytest.raises(NnbackError, match=r"the first record is written at step 50"):
        diagnose_run(tmp_path)


def test_diagnose_of_a_path_that_is_no_run_folder(tmp_path):
    """Found by trying: a mistyped folder was told how diagnostics are recorded."""
    with pytest.raises(NnbackError, match=rf"^{tmp_path / 'nope'}: no such run folder$"):
        diagnose_run(tmp_path / "nope")
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(NnbackError, match=r"summary.json: a file, not a run folder$"):
        diagnose_run(tmp_path / "summary.json")
