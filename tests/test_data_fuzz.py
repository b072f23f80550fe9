"""Hostile bytes for the data readers (CSV, .npy, .npz, IDX) and for loading a file-based
data config end to end: each returns data or raises ``DataError`` with one line naming
the file, never another exception.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnback.config.data_schema import FileData
from nnback.data import load_data, read_inputs
from nnback.data.files import read_csv, read_npy, read_npz
from nnback.data.idx import IDX_TYPES, idx_bytes, read_idx
from nnback.data.load import DataMeta
from nnback.data.preprocess import Preprocessor
from nnback.errors import DataError

# numpy warnings would be extra lines on stderr: each must be handled, not printed.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def assert_data_or_one_line(read, origin: str):
    """The property: ``read()`` returns, or raises DataError of one line naming ``origin``."""
    try:
        return read()
    except DataError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(f"{origin}: "), message
        return None


@st.composite
def mutated(draw, valid: bytes) -> bytes:
    """``valid`` with a few bytes flipped, cut, inserted or the end dropped."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "truncate", "set"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif action == "set" and data:
            data[at] = draw(st.sampled_from([0, 0xFF, 0x7F, ord("9"), ord("("), ord("'"), ord(",")]))
        elif action == "cut":
            del data[at:at + draw(st.integers(1, 16))]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at:]
    return bytes(data)


# --- CSV ----------------------------------------------------------------------------------

CSV_VALID = "a,b,label\n1.5,2,cat\n-3,4e2,dog\n5,6,cat\n0.25,nan,emu\n"
cells = st.sampled_from(["", "1", "-2.5", "1e39", "1e400", "nan", "-inf", "cat", "a", "b", "label",
                         '"q,uoted"', '"', "\ufeff", "\x00", "0x10", "1_000", " 7 ", "9" * 400, "é"])
csv_texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.lists(cells, min_size=1, max_size=5), min_size=1, max_size=6).map(
        lambda rows: "\n".join(",".join(r) for r in rows) + "\n"),
    st.builds(lambda bom, body: ("\ufeff" if bom else "") + body, st.booleans(), st.just(CSV_VALID)),
)


@FUZZ
@given(text=csv_texts, target=st.sampled_from(["label", "a", "missing", None]),
       features=st.sampled_from([None, ["a", "b"], ["b"], ["label"], ["zz"], []]),
       task=st.sampled_from(["auto", "classification", "regression"]))
def test_csv_text(tmp_path, text, target, features, task):
    path = tmp_path / "f.csv"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    table = assert_data_or_one_line(lambda: read_csv(path, "f.csv", target, features, task), "f.csv")
    if table is not None:
        assert table.X.shape == (len(table), len(table.feature_names))
        assert_data_or_one_line(table.check_finite, "f.csv")


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), mutated(CSV_VALID.encode())))
def test_csv_bytes(tmp_path, data):
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    assert_data_or_one_line(lambda: read_csv(path, "f.csv", "label", None), "f.csv")


@FUZZ
@given(text=csv_texts, options=st.fixed_dictionaries(
    {"target": st.sampled_from(["label", "a", "b"]),
     "task": st.sampled_from(["auto", "classification", "regression"]),
     "preprocess": st.sampled_from(["none", "standardize", "minmax"]),
     "split": st.sampled_from([{"val": 0.0}, {"val": 0.3}, {"val": 0.3, "test": 0.3}])}))
def test_csv_config_loads_end_to_end(tmp_path, text, options):
    """Reading, labels, split and preprocessing of a hostile CSV through ``load_data``."""
    (tmp_path / "f.csv").write_text(text, encoding="utf-8")
    cfg = FileData.model_validate({"source": "f.csv", **options})
    bundle = assert_data_or_one_line(lambda: load_data(cfg, seed=0, base_dir=tmp_path), "f.csv")
    if bundle is not None:
        assert np.isfinite(bundle.train.X).all()
        assert len(bundle.train) > 0


# --- .npy and .npz ------------------------------------------------------------------------


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


NPY_VALID = _npy(np.arange(12, dtype="<f4").reshape(4, 3))
header_dicts = st.fixed_dictionaries({
    "descr": st.sampled_from(["<f8", ">i4", "|u1", "<c16", "|b1", "<U3", "|V4", "<M8[s]", "|S2", "<f2"]),
    "fortran_order": st.booleans(),
    "shape": st.lists(st.sampled_from([0, 1, 3, 2**31, 2**62, 2**64 - 1]), max_size=4).map(tuple),
})


def _npy_with_header(header: dict, data: bytes) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + data


npy_files = st.one_of(
    st.binary(max_size=200),
    mutated(NPY_VALID),
    st.builds(_npy_with_header, header_dicts, st.binary(max_size=64)),
)


@FUZZ
@given(data=npy_files, mmap=st.booleans())
def test_npy_bytes(tmp_path, data, mmap):
    path = tmp_path / "x.npy"
    path.write_bytes(data)
    X = assert_data_or_one_line(lambda: read_npy(path, "x.npy", mmap=mmap), "x.npy")
    if X is not None:
        assert X.shape is not None


def _npz(members: dict[str, bytes], method: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


ODD_ARRAYS = [_npy(a) for a in (np.float64(3), np.zeros((3, 0)), np.zeros((0, 3)), np.array(["a", "b"]),
                                np.array([1e300, -1e300]), np.array([[np.nan, 1.0]]), np.zeros(3, bool),
                                np.arange(3, dtype=np.uint64) * (2**63), np.ones((2, 2), complex))]
NPZ_VALID = _npz({"X.npy": NPY_VALID, "y.npy": _npy(np.arange(4))}, zipfile.ZIP_DEFLATED)
npz_files = st.one_of(
    st.binary(max_size=200),
    mutated(NPZ_VALID),
    st.builds(_npz, st.dictionaries(st.sampled_from(["X.npy", "y.npy", "X", "y", "z.txt", "X.npy/"]),
                                    npy_files | st.sampled_from(ODD_ARRAYS), max_size=3),
              st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])),
)


@FUZZ
@given(data=npz_files, y_key=st.sampled_from(["y", None]))
def test_npz_bytes(tmp_path, data, y_key):
    path = tmp_path / "d.npz"
    path.write_bytes(data)
    table = assert_data_or_one_line(lambda: read_npz(path, "d.npz", "X", y_key), "d.npz")
    if table is not None:
        assert table.X.ndim == 2
        assert_data_or_one_line(table.check_finite, "d.npz")


# --- IDX ----------------------------------------------------------------------------------

IDX_VALID = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
idx_headers = st.builds(
    lambda code, dims, data: (bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
                              + data),
    st.sampled_from(sorted(IDX_TYPES) + [0x00, 0x0A, 0xFF]),
    st.lists(st.sampled_from([0, 1, 2, 3, 255, 2**31, 2**32 - 1]), max_size=5),
    st.binary(max_size=64),
)
idx_files = st.one_of(st.binary(max_size=100), mutated(IDX_VALID), idx_headers)


@FUZZ
@given(data=idx_files, compress=st.sampled_from(["none", "gzip", "gzip-mutated"]), seed=st.integers(0, 3))
def test_idx_bytes(tmp_path, data, compress, seed):
    if compress != "none":
        data = gzip.compress(data, mtime=0)
    if compress == "gzip-mutated":
        data = bytearray(data)
        data[(seed * 7919) % len(data)] ^= 0x5A
        data = bytes(data)
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(data)
    assert_data_or_one_line(lambda: read_idx(path, "x-idx3-ubyte"), "x-idx3-ubyte")


# --- prediction inputs --------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_meta():
    meta = DataMeta("classification", ["cat", "dog"], 3, 2, ["a", "b", "c"], "X")
    prep = Preprocessor("standardize").fit(np.array([[0.0, 1, 2], [1, 3, 5]]))
    return meta, prep


@FUZZ
@given(kind=st.sampled_from(["csv", "npy", "npz", "idx"]), data=st.data())
def test_prediction_inputs(tmp_path, saved_meta, kind, data):
    strategy = {"csv": csv_texts.map(str.encode), "npy": npy_files, "npz": npz_files, "idx": idx_files}[kind]
    path = Path(tmp_path / f"in.{kind}")
    path.write_bytes(data.draw(strategy))
    X = assert_data_or_one_line(lambda: read_inputs(path, *saved_meta), str(path))
    if X is not None:
        assert X.dtype == np.float32 and np.isfinite(X).all() and X.shape[1] == 3
