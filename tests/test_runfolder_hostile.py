"""Hand-edited or foreign files in run folders: model.npz, summary.json, metrics.jsonl and
diagnostics.jsonl. Commands end with exit 2 and one line, and one bad run folder does
not stop ``nnback runs`` from listing the others.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import invoke, one_error
from test_runs import make_run

from nnback.runfolder.checkpoint import load_checkpoint, save_checkpoint

# numpy warnings would be extra lines on stderr: each must be handled, not printed.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


@pytest.fixture
def model_file(tmp_path, completed_run):
    """A copy of a trained run's model.npz, and a valid input file for it."""
    _, run = completed_run()
    path = tmp_path / "model.npz"
    shutil.copy(run / "model.npz", path)
    np.save(tmp_path / "in.npy", np.zeros((3, 2)))
    return path


def _edit(path, change):
    """Rewrite the checkpoint at ``path`` with ``change(arrays, meta)`` applied (valid checksum)."""
    arrays, meta = load_checkpoint(path)
    change(arrays, meta)
    save_checkpoint(path, arrays, meta)


def _set(*keys, value):
    def change(arrays, meta):
        node = meta
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return change


def _arrays(fn):
    return lambda arrays, meta: fn(arrays)


EDITS = {
    "config not a mapping": (_set("config", value=[1, 2]), "not an nnback model"),
    "config with a bad key": (_set("config", "optimizer", "lr", value=-1), "not an nnback model"),
    "empty name": (_set("config", "name", value=""), "not an nnback model"),
    "no data description": (lambda a, m: m.pop("data"), "not an nnback model (KeyError"),
    "data not a mapping": (_set("data", value="x"), "not an nnback model"),
    "unknown data field": (_set("data", "colour", value=1), "not an nnback model"),
    "feature count a string": (_set("data", "n_features", value="2"), "n_features '2'"),
    "zero features": (_set("data", "n_features", value=0), "n_features 0"),
    "task unknown": (_set("data", "task", value="poetry"), "task 'poetry'"),
    "classes too few": (_set("data", "classes", value=[0]), "classes [0] for 3 outputs"),
    "classes repeated": (_set("data", "classes", value=[0, 0, 1]), "classes [0, 0, 1]"),
    "classes as a dict": (_set("data", "classes", value={"a": 1}), "classes {'a': 1}"),
    "feature names wrong": (_set("data", "feature_names", value=["a"]), "feature_names ['a'] for 2"),
    "huge feature count": (_set("data", "n_features", value=10**12), "data with 1000000000000"),
    "huge layer": (_set("config", "model", "layers", 0, "units", value=10**9), "need more values than the"),
    "no preprocessing": (_arrays(lambda a: [a.pop(k) for k in list(a) if k.startswith("prep/")]),
                         "saved preprocessing lacks"),
    "preprocessing of text": (_arrays(lambda a: a.__setitem__("prep/shift", np.array(["a", "b"]))),
                              "shift and scale must be finite float32 numbers"),
    "complex preprocessing": (_arrays(lambda a: a.__setitem__("prep/scale", np.ones(2, complex))),
                              "shift and scale must be finite float32 numbers"),
    "preprocessing beyond float32": (_arrays(lambda a: a.__setitem__("prep/scale", np.full(2, 1e39))),
                                     "shift and scale must be finite float32 numbers"),
    "preprocessing for 5 features": (_arrays(lambda a: a.update({"prep/shift": np.zeros(5, np.float32),
                                                                  "prep/scale": np.ones(5, np.float32)})),
                                     "preprocessing for 5 features, data with 2"),
    "empty preprocessing": (
        _arrays(lambda a: a.update({"prep/shift": np.zeros(0), "prep/scale": np.zeros(0)})),
        "saved preprocessing is invalid"),
    "weights of text": (_arrays(lambda a: a.__setitem__("model/0.W", np.full((2, 16), "x"))),
                        "weights do not fit the saved config"),
    "weights of complex numbers": (_arrays(lambda a: a.__setitem__("model/0.W", np.ones((2, 16), complex))),
                                   "weights do not fit the saved config"),
    "weights missing": (_arrays(lambda a: a.pop("model/0.W")), "weights do not fit the saved config"),
}


@pytest.mark.parametrize("edit, message", EDITS.values(), ids=EDITS.keys())
def test_hand_edited_model_is_one_line(model_file, edit, message):
    _edit(model_file, edit)
    for command in (["predict", model_file, model_file.parent / "in.npy"], ["eval", model_file]):
        line = one_error(invoke(*command), f"{model_file}: ")
        assert message in line, line


@pytest.mark.parametrize("name", ["../../x", "/abs", "my run (v1)", "new\nline"])
def test_a_saved_name_is_only_a_label(model_file, name):
    """Earlier versions saved names new runs may not have; loading one makes no folder."""
    _edit(model_file, _set("config", "name", value=name))
    before = sorted(model_file.parent.iterdir())
    result = invoke("predict", model_file, model_file.parent / "in.npy")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("prediction,") and len(result.stdout.splitlines()) == 4
    assert sorted(model_file.parent.iterdir()) == before


@pytest.mark.parametrize("values", [np.full((2, 16), np.nan, np.float32), np.full((2, 16), 1e300)],
                         ids=["NaN", "beyond float32"])
def test_weights_that_are_not_finite_are_refused(model_file, values):
    _edit(model_file, _arrays(lambda a: a.__setitem__("model/0.W", values)))
    one_error(invoke("predict", model_file, model_file.parent / "in.npy"),
              f"{model_file}: weights 0.W hold NaN or inf (or values too large for float32)")


@pytest.mark.parametrize("meta", ["[" * 100_000, '{"checksum": 1}', "{", ""])
def test_checkpoint_meta_that_is_not_ours(tmp_path, meta):
    np.savez(tmp_path / "m.npz", meta=np.array(meta), w=np.zeros(2))
    one_error(invoke("predict", tmp_path / "m.npz", tmp_path / "in.npy"),
              f"{tmp_path / 'm.npz'}: invalid 'meta' entry (file corrupted)")


@pytest.mark.parametrize("replace", ["fifo", "folder", "device", "garbage", "empty zip"])
def test_model_file_that_is_not_a_model(model_file, replace):
    model_file.unlink()
    if replace == "fifo":
        os.mkfifo(model_file)
    elif replace == "folder":
        model_file.mkdir()
        (model_file / "x").write_text("")
    elif replace == "device":
        model_file.symlink_to("/dev/zero")
    elif replace == "garbage":
        model_file.write_bytes(b"PK\x03\x04" + bytes(100))
    else:
        np.savez(model_file)
    result = invoke("predict", model_file, model_file.parent / "in.npy")
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output


# --- nnback runs, plot and diagnose over damaged folders -------------------------------------


def _runs_output(root, caplog):
    """The rows ``nnback runs --format json`` prints, and its warnings."""
    result = invoke("runs", root, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), caplog.text


BAD_SUMMARIES = {
    "not json": "{",
    "a list": "[1, 2]",
    "deeply nested": "[" * 100_000 + "]" * 100_000,
    "status a number": json.dumps({"status": 3}),
    "unknown status": json.dumps({"status": "exploded"}),
    "final a list": json.dumps({"status": "completed", "final": [1]}),
    "best a string": json.dumps({"status": "completed", "best": "x"}),
    "seconds infinite": '{"status": "completed", "wall_seconds": Infinity}',
    "seconds negative": json.dumps({"status": "completed", "wall_seconds": -4}),
    "epochs a float": json.dumps({"status": "completed", "epochs": 2.5}),
    "huge": json.dumps({"status": "completed", "pad": "x" * (2 << 20)}),
    "not utf-8": b"\xff\xfe{}",
}


@pytest.mark.parametrize("text", BAD_SUMMARIES.values(), ids=BAD_SUMMARIES.keys())
def test_one_bad_summary_does_not_hide_the_other_runs(tmp_path, caplog, text):
    make_run(tmp_path / "runs" / "good")
    make_run(tmp_path / "runs" / "bad", lr=0.2)
    path = tmp_path / "runs" / "bad" / "summary.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    rows, output = _runs_output(tmp_path / "runs", caplog)
    assert [r["run"] for r in rows] == ["good"]
    assert f"warning: {path}: " in output and "(run left out)" in output


@pytest.mark.parametrize("damage", ["fifo summary", "device summary", "bad config", "config folder",
                                    "fifo metrics", "foreign metrics"])
def test_runs_survives_other_damage(tmp_path, caplog, damage):
    make_run(tmp_path / "runs" / "good")
    bad = tmp_path / "runs" / "bad"
    make_run(bad, lr=0.2)
    if damage == "fifo summary":
        (bad / "summary.json").unlink()
        os.mkfifo(bad / "summary.json")
    elif damage == "device summary":
        (bad / "summary.json").unlink()
        (bad / "summary.json").symlink_to("/dev/zero")
    elif damage == "bad config":
        (bad / "config.yaml").write_text("a: &a [*a]\n")
    elif damage == "config folder":
        shutil.rmtree(bad)
        (bad / "config.yaml").mkdir(parents=True)
    elif damage == "fifo metrics":
        (bad / "metrics.jsonl").unlink()
        os.mkfifo(bad / "metrics.jsonl")
    else:
        (bad / "metrics.jsonl").write_text('{"epoch": "one", "val_loss": 1}\n{"epoch": 2, "val_loss": [1]}\n'
                                           '{"epoch": 3, "step": 30, "val_loss": 0.25}\n')
    rows, output = _runs_output(tmp_path / "runs", caplog)
    if damage == "config folder":
        assert [r["run"] for r in rows] == ["good"]
    elif damage == "foreign metrics":
        assert sorted(r["run"] for r in rows) == ["bad", "good"]
        assert "2 records not in the metrics format left out" in output
        assert next(r for r in rows if r["run"] == "bad")["best_val_loss"] == 0.25
    else:
        assert [r["run"] for r in rows] == ["good"] and "(run left out)" in output


def test_plot_of_a_bad_run_is_one_line(tmp_path):
    pytest.importorskip("matplotlib")
    make_run(tmp_path / "run")
    (tmp_path / "run" / "summary.json").write_text("[" * 10_000)
    one_error(invoke("plot", tmp_path / "run", "-o", tmp_path / "p.png"),
              f"{tmp_path / 'run' / 'summary.json'}: ")
    assert not (tmp_path / "p.png").exists()


GOOD_RECORD = {"step": 10, "epoch": 1, "lr": 0.1,
               "params": {"0.W": {"weight_norm": 1.0, "grad_norm": 0.1, "update_ratio": 0.001,
                                  "matrix": True}},
               "layers": [{"layer": 0, "type": "Linear", "dx_norm": 0.5}], "depth_ratio": None}
FOREIGN_RECORDS = [
    {"step": 1}, {"params": {}, "layers": []}, {**GOOD_RECORD, "step": "10"},
    {**GOOD_RECORD, "params": [1]}, {**GOOD_RECORD, "params": {"0.W": 3}},
    {**GOOD_RECORD, "params": {"0.W": {"grad_norm": "big"}}},
    {**GOOD_RECORD, "layers": [{"layer": "0", "type": "Linear"}]},
    {**GOOD_RECORD, "layers": [{"layer": 0}]}, {**GOOD_RECORD, "lr": [0.1]},
]


def test_diagnose_leaves_out_foreign_records(tmp_path, caplog):
    make_run(tmp_path / "run")
    path = tmp_path / "run" / "diagnostics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in FOREIGN_RECORDS)
                    + '{"step": 1, "params": {}, "layers": [], "lr": NaN}\n')
    one_error(invoke("diagnose", tmp_path / "run"), f"{tmp_path / 'run'}: no gradient-flow records: ")
    with path.open("a") as f:
        f.write(json.dumps(GOOD_RECORD) + "\n")
    result = invoke("diagnose", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert f"warning: {path}: {len(FOREIGN_RECORDS) + 1} records not in the diagnostics format left out" \
        in caplog.text
    assert "1 gradient-flow records, steps 10-10" in result.output


def test_diagnose_of_a_fifo_is_one_line(tmp_path):
    make_run(tmp_path / "run")
    os.mkfifo(tmp_path / "run" / "diagnostics.jsonl")
    one_error(invoke("diagnose", tmp_path / "run"), f"{tmp_path / 'run' / 'diagnostics.jsonl'}: is a FIFO")
