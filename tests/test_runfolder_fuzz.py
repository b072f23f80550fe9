"""Hostile bytes and hand-edited values for the readers of run folders: checkpoints and
model.npz (``load_checkpoint``, ``nnback.load``), ``summary.json``, ``metrics.jsonl`` and
``diagnostics.jsonl`` (``nnback runs``, ``diagnose``). Each reads the file or raises an
``NnbackError`` of one line, never another exception.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_data_fuzz import mutated
from test_runfolder_hostile import GOOD_RECORD
from test_runs import make_run

import nnback
from nnback.commands.diagnose import diagnose_run
from nnback.commands.runs import load_run, runs_table
from nnback.errors import NnbackError
from nnback.runfolder.checkpoint import load_checkpoint, save_checkpoint
from nnback.runfolder.jsonl import read_jsonl

# numpy warnings would be extra lines on stderr: each must be handled, not printed.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=8),
                         st.floats(allow_nan=True, allow_infinity=True),
                         st.sampled_from([0, -1, 2, 10**12, "auto", "classification", "regression", "X"]))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)


def one_line(exc: NnbackError) -> None:
    assert str(exc) and "\n" not in str(exc), str(exc)


@pytest.fixture(scope="module")
def model_bytes(completed_run):
    """The model.npz of the shared tiny trained run: its bytes, arrays and meta."""
    _, run = completed_run()
    arrays, meta = load_checkpoint(run / "model.npz")
    return (run / "model.npz").read_bytes(), arrays, meta


def _load_or_error(path) -> None:
    try:
        predictor = nnback.load(path)
    except NnbackError as exc:
        one_line(exc)
        return
    try:
        out = predictor.predict(np.zeros((2, predictor.data.n_features)))
    except NnbackError as exc:  # weights that give non-finite outputs
        one_line(exc)
        return
    assert len(out) == 2


@FUZZ
@given(data=st.data())
def test_damaged_model_bytes(tmp_path, model_bytes, data):
    raw, _, _ = model_bytes
    path = tmp_path / "model.npz"
    path.write_bytes(data.draw(st.one_of(mutated(raw), st.binary(max_size=300))))
    _load_or_error(path)


def _paths(node, prefix=()):
    """Every key path of a nested dict/list."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        yield prefix + (key,)
        if isinstance(value, (dict, list)):
            yield from _paths(value, prefix + (key,))


@FUZZ
@given(data=st.data())
def test_hand_edited_model_meta(tmp_path, model_bytes, data):
    """A value anywhere in the meta (config, data description) replaced, checksum intact."""
    _, arrays, meta = model_bytes
    meta = json.loads(json.dumps(meta))
    for _ in range(data.draw(st.integers(1, 3))):
        keys = data.draw(st.sampled_from(sorted(_paths(meta), key=str)))
        node = meta
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = data.draw(json_values)
    path = tmp_path / "model.npz"
    save_checkpoint(path, arrays, meta)
    _load_or_error(path)


odd_arrays = st.sampled_from([np.zeros(0), np.zeros((2, 16)), np.full((2, 16), np.inf, np.float32),
                              np.array("standardize"), np.array(["a"]), np.zeros((16, 2)), np.float32(3),
                              np.ones((3, 3), complex), np.zeros((2, 16), bool), np.zeros(2, np.int64)])


@FUZZ
@given(data=st.data())
def test_hand_edited_model_arrays(tmp_path, model_bytes, data):
    _, arrays, meta = model_bytes
    arrays = dict(arrays)
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(arrays)) | st.sampled_from(["model/9.W", "prep/kind", "x"]))
        if data.draw(st.booleans()) and key in arrays:
            del arrays[key]
        else:
            arrays[key] = data.draw(odd_arrays)
    path = tmp_path / "model.npz"
    save_checkpoint(path, arrays, meta)
    _load_or_error(path)


# --- summary.json, metrics.jsonl, diagnostics.jsonl ------------------------------------------

SUMMARY = {"name": "digits-mlp", "status": "completed", "epochs": 3, "steps": 30, "best": {"val_loss": 0.5},
           "final": {"test_loss": 0.3, "test_accuracy": 0.9}, "wall_seconds": 12.5}


@FUZZ
@given(data=st.data())
def test_summary_and_metrics(tmp_path, data):
    root = Path(tempfile.mkdtemp(dir=tmp_path)) / "runs"  # one per example
    good, bad = root / "good", root / "bad"
    make_run(good)
    make_run(bad, lr=0.2)
    summary = json.loads(json.dumps(SUMMARY))
    for _ in range(data.draw(st.integers(0, 3))):
        summary[data.draw(st.sampled_from(sorted(summary)))] = data.draw(json_values)
    def latin(raw: bytes) -> str:
        return raw.decode("latin-1")

    text = data.draw(st.one_of(st.just(json.dumps(summary)), st.binary(max_size=100).map(latin),
                               mutated(json.dumps(summary).encode()).map(latin)))
    (bad / "summary.json").write_text(text, encoding="latin-1")
    lines = data.draw(st.lists(json_values.map(json.dumps) | st.text(max_size=20), max_size=4))
    (bad / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    try:
        load_run(bad)
    except NnbackError as exc:
        one_line(exc)
    fmt = data.draw(st.sampled_from(["table", "csv", "json"]))
    sort = data.draw(st.sampled_from([None, "val_loss", "seconds", "status", "test_accuracy", "epochs"]))
    try:
        out = runs_table(root, sort=sort, fmt=fmt)
    except NnbackError as exc:
        one_line(exc)
        assert str(exc).startswith("--sort")
        return
    assert "good" in out


@FUZZ
@given(lines=st.lists(st.one_of(json_values.map(json.dumps), st.text(max_size=30),
                                st.just(json.dumps(GOOD_RECORD)),
                                st.builds(lambda k, v: json.dumps({**GOOD_RECORD, k: v}),
                                          st.sampled_from(sorted(GOOD_RECORD)), json_values)), max_size=5),
       data=st.binary(max_size=60))
def test_diagnostics_records(tmp_path, lines, data):
    run = Path(tempfile.mkdtemp(dir=tmp_path)) / "run"  # one per example
    make_run(run)
    path = run / "diagnostics.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass") + data)
    assert all(isinstance(r, dict) for r in read_jsonl(path))
    try:
        report = diagnose_run(run)
    except NnbackError as exc:
        one_line(exc)
        return
    assert "gradient-flow records" in report

