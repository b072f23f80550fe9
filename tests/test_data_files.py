"""File readers: CSV, .npz, .npy, IDX, and the one-line error of every bad file."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from nnback.data.files import arrays_table, read_csv, read_npy, read_npz
from nnback.data.idx import idx_bytes, read_idx
from nnback.data.mapped import MappedNpy
from nnback.errors import DataError


def write(path, text):
    path.write_text(text)
    return path


def test_csv_string_labels_and_line_numbers(tmp_path):
    path = write(tmp_path / "a.csv", "x1, x2 ,label\n1,2,cat\n\n3,4.5,dog\n")
    table = read_csv(path, "a.csv", "label", None)
    np.testing.assert_array_equal(table.X, [[1, 2], [3, 4.5]])
    assert table.y.tolist() == ["cat", "dog"]
    assert table.feature_names == ["x1", "x2"]
    assert table.lines.tolist() == [2, 4]


def test_csv_feature_selection_and_integer_labels(tmp_path):
    path = write(tmp_path / "a.csv", "a,b,c,y\n1,2,3,7\n4,5,6,8\n")
    table = read_csv(path, "a.csv", "y", ["c", "a"])
    np.testing.assert_array_equal(table.X, [[3, 1], [6, 4]])
    assert table.y.dtype == np.int64 and table.y.tolist() == [7, 8]


@pytest.mark.parametrize("task, kind", [("auto", "f"), ("regression", "f"), ("classification", "U")])
def test_csv_float_target_task(tmp_path, task, kind):
    path = write(tmp_path / "a.csv", "x,y\n1,0.5\n2,1.5\n")
    assert read_csv(path, "a.csv", "y", None, task).y.dtype.kind == kind


def test_csv_regression_target_is_a_column(tmp_path):
    path = write(tmp_path / "a.csv", "x,y\n1,2\n3,4\n")
    y = read_csv(path, "a.csv", "y", None, "regression").y
    assert y.shape == (2, 1) and y.dtype == np.float64


@pytest.mark.parametrize("text, message", [
    ("", "a.csv: empty file (expected a header row)"),
    ("x,y\n", "a.csv: no data rows after the header"),
    ("x,y\n1,2\n1,2,3\n", "a.csv: row 3: 3 values, but the header has 2 columns"),
    ("x,y\n1,2\nabc,3\n", "a.csv: row 3, column 'x': 'abc' is not a number"),
    ("x,y\n1,2\n,3\n", "a.csv: row 3, column 'x': empty value"),
    ("x,y\n1,2\n3,\n", "a.csv: row 3, column 'y': empty label"),
    ("x,z\n1,2\n", "a.csv: no column 'y' (columns: x, z)"),
    ("y\n1\n", "a.csv: no feature columns besides 'y'"),
    ('x,y\n1,2\n"3,4\n', "a.csv: row 3: unexpected end of data"),
])
def test_csv_errors(tmp_path, text, message):
    path = write(tmp_path / "a.csv", text)
    with pytest.raises(DataError) as info:
        read_csv(path, "a.csv", "y", None).check_finite()
    assert str(info.value) == message


@pytest.mark.parametrize("cell, word", [("nan", "NaN"), ("inf", "inf"), ("-Infinity", "-inf")])
def test_csv_non_finite_names_row_and_column(tmp_path, cell, word):
    path = write(tmp_path / "t.csv", "x1,x2,y\n" + "1,2,0\n" * 15 + f"1,{cell},1\n")
    with pytest.raises(DataError, match=rf"^t\.csv: row 17, column 'x2': value is {word}$"):
        read_csv(path, "t.csv", "y", None).check_finite()


def test_csv_not_utf8_and_missing(tmp_path):
    (tmp_path / "b.csv").write_bytes(b"x,y\n\xff\xfe,1\n")
    with pytest.raises(DataError, match="b.csv: not a UTF-8 text file"):
        read_csv(tmp_path / "b.csv", "b.csv", "y", None)
    with pytest.raises(DataError, match="^nope.csv: file not found$"):
        read_csv(tmp_path / "nope.csv", "nope.csv", "y", None)


def test_npz_keys_and_flattening(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((4, 3, 3), np.uint8), labels=np.arange(4))
    table = read_npz(tmp_path / "d.npz", "d.npz", "images", "labels")
    assert table.X.shape == (4, 9) and table.where_x(2, 5) == "d.npz: images[2, 5]"
    with pytest.raises(DataError, match=r"^d.npz: no array 'X' \(arrays: images, labels\)$"):
        read_npz(tmp_path / "d.npz", "d.npz", "X", "y")


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "m.npz", X=np.zeros((5, 2)), y=np.zeros(4))
    with pytest.raises(DataError, match=r"^m.npz: X has 5 rows but m.npz: y has 4$"):
        read_npz(tmp_path / "m.npz", "m.npz", "X", "y")
    np.savez(tmp_path / "o.npz", X=np.array([{}, {}], dtype=object), y=np.zeros(2))
    with pytest.raises(DataError, match="o.npz: X: holds Python objects"):
        read_npz(tmp_path / "o.npz", "o.npz", "X", "y")
    data = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.npz: truncated or not an .npz file"):
        read_npz(tmp_path / "cut.npz", "cut.npz", "X", "y")


def test_array_checks():
    with pytest.raises(DataError, match=r"^x: X has no rows$"):
        arrays_table(np.zeros((0, 2)), np.zeros(0), "x", "y")
    with pytest.raises(DataError, match="features must be numbers"):
        arrays_table(np.array([["a"]]), np.zeros(1), "x", "y")
    table = arrays_table(np.array([[1.0, np.inf]]), np.zeros(1), "x.npy", "y.npy")
    with pytest.raises(DataError, match=r"^x.npy: X\[0, 1\]: value is inf$"):
        table.check_finite()


def test_npy_in_memory_and_truncated(tmp_path):
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "x.npy", X)
    np.testing.assert_array_equal(read_npy(tmp_path / "x.npy", "x.npy"), X)
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[:-5])
    with pytest.raises(DataError, match="t.npy: truncated: the header promises"):
        read_npy(tmp_path / "t.npy", "t.npy")
    with pytest.raises(DataError, match=r"^t.npy: truncated: the header promises"):
        read_npy(tmp_path / "t.npy", "t.npy", mmap=True)


def test_mapped_npy_gathers_and_releases(tmp_path):
    X = np.arange(60, dtype=np.float64).reshape(5, 3, 4)
    np.save(tmp_path / "x.npy", X)
    mapped = MappedNpy(tmp_path / "x.npy", "x.npy")
    assert mapped.shape == (5, 12) and len(mapped) == 5
    np.testing.assert_array_equal(mapped[np.array([4, 0])], X.reshape(5, 12)[[4, 0]])
    np.testing.assert_array_equal(mapped[1:3], X.reshape(5, 12)[1:3])
    np.save(tmp_path / "f.npy", np.asfortranarray(X[:, :, 0]))
    with pytest.raises(DataError, match="f.npy: memory mapping needs a C-order array") as rejected:
        MappedNpy(tmp_path / "f.npy", "f.npy")
    maps = Path("/proc/self/maps")
    if maps.exists():  # the rejected file is unmapped at once, not at garbage collection
        assert rejected.traceback and str(tmp_path / "f.npy") not in maps.read_text()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, dtype, compress):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    data = idx_bytes(array)
    (tmp_path / "a").write_bytes(gzip.compress(data) if compress else data)
    out = read_idx(tmp_path / "a", "a")
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("mangle, message", [
    (lambda b: gzip.compress(b)[:-12], "a: unreadable gzip data"),
    (lambda b: b"\x1f\x8b" + b"garbage", "a: unreadable gzip data"),
    (lambda b: b"\x01\x02\x08\x01" + b[4:], "a: not an IDX file (bad header)"),
    (lambda b: b[:10], "a: truncated IDX header"),
    (lambda b: b[:-1], "a: truncated: the IDX header promises 24 bytes of data, found 23"),
    (lambda b: b + b"\x00", "a: trailing bytes: the IDX header promises 24 bytes of data, found more"),
])
def test_idx_errors(tmp_path, mangle, message):
    (tmp_path / "a").write_bytes(mangle(idx_bytes(np.zeros((2, 3, 4), np.uint8))))
    with pytest.raises(DataError) as info:
        read_idx(tmp_path / "a", "a")
    assert str(info.value).startswith(message)
