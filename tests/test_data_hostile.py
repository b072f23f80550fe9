"""Untrusted data files: devices, FIFOs, decompression bombs, lying or overflowing headers,
values beyond float32, and CSV headers that are missing, repeated or carry a byte-order
mark. Each ends with one line naming the file (exit 2 from a command), within bounded
time and memory.
"""

from __future__ import annotations

import gzip
import io
import os
import resource
import struct
import subprocess
import zipfile

import numpy as np
import pytest
from conftest import invoke, nnback_command, one_error

from nnback.data.files import read_csv, read_npy, read_npz
from nnback.data.idx import idx_bytes, read_idx
from nnback.errors import DataError

# numpy warnings would be extra lines on stderr: each must be handled, not printed.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

READERS = {
    "csv": lambda p: read_csv(p, "f", "y", None),
    "npz": lambda p: read_npz(p, "f", "X", "y"),
    "npy": lambda p: read_npy(p, "f"),
    "npy-mmap": lambda p: read_npy(p, "f", mmap=True),
    "idx": lambda p: read_idx(p, "f"),
}


# --- device files and FIFOs -------------------------------------------------------


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize("device, kind", [("/dev/zero", "a character device"),
                                          ("/dev/urandom", "a character device"),
                                          ("/dev/null", "a character device"),
                                          (".", "a folder")])
def test_devices_and_folders_are_refused(reader, device, kind):
    with pytest.raises(DataError, match=rf"^f: is {kind}, expected a regular file$"):
        reader(device)


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_a_fifo_is_refused_without_opening_it(tmp_path, reader):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"^f: is a FIFO \(named pipe\), expected a regular file$"):
        reader(fifo)


def test_a_symbolic_link_to_a_device_is_refused(tmp_path):
    (tmp_path / "link.csv").symlink_to("/dev/zero")
    with pytest.raises(DataError, match="is a character device"):
        READERS["csv"](tmp_path / "link.csv")


def _limited_memory():
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


@pytest.mark.parametrize("source", ["fifo", "/dev/zero"])
def test_training_and_predicting_from_a_fifo_or_device_ends_with_exit_2(tmp_path, completed_run, source):
    """In a subprocess with a timeout and a memory limit: a hang or a runaway read fails the test."""
    path = tmp_path / "data.csv"
    if source == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(source)
    (tmp_path / "cfg.yaml").write_text(
        "name: x\ndata: {source: data.csv, target: y}\nmodel: {mlp: {hidden: [4]}}\n"
        "loss: softmax_cross_entropy\noptimizer: {type: sgd, lr: 0.1}\n", encoding="utf-8")
    _, run = completed_run()
    for args in (["train", "cfg.yaml"], ["predict", run, path]):
        done = subprocess.run(nnback_command(*args), cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, preexec_fn=_limited_memory)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "expected a regular file" in done.stderr, done.stderr


# --- decompression bombs and lying headers ------------------------------------------


def _zeros_gzip(megabytes: int) -> bytes:
    """Gzip members of 1 MiB of zeros each, concatenated: cheap to build, big to inflate."""
    member = gzip.compress(bytes(1 << 20), mtime=0)
    return member * megabytes


def test_gzip_idx_bomb_stops_at_the_declared_size(tmp_path):
    header = gzip.compress(idx_bytes(np.zeros((2, 3), np.uint8)), mtime=0)
    (tmp_path / "bomb.gz").write_bytes(header + _zeros_gzip(512))
    with pytest.raises(DataError, match=r"^f: trailing bytes: the IDX header promises 6 bytes of data, "
                                        r"found more$"):
        read_idx(tmp_path / "bomb.gz", "f")


@pytest.mark.parametrize("dims", [(2**32 - 1,) * 3, (2**31, 2**31, 4), (65536, 65536, 65536, 65536),
                                  (0, 2**32 - 1, 2**32 - 1, 2**32 - 1)])
def test_idx_header_sizes_that_overflow_int64(tmp_path, dims):
    header = struct.pack(f">2xBB{len(dims)}I", 0x08, len(dims), *dims)
    for name, data in (("raw", header + bytes(16)), ("gz", gzip.compress(header + bytes(16)))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=r"^f: the header declares an impossible shape \("):
            read_idx(tmp_path / name, "f")


def test_idx_header_declaring_more_than_the_file(tmp_path):
    header = struct.pack(">2xBB2I", 0x08, 2, 2**20, 2**20)
    (tmp_path / "raw").write_bytes(header + bytes(16))
    with pytest.raises(DataError, match=r"^f: truncated: the IDX header promises 1099511627776 bytes of "
                                        r"data, found 16$"):
        read_idx(tmp_path / "raw", "f")
    (tmp_path / "gz").write_bytes(gzip.compress(header + bytes(16)))
    with pytest.raises(DataError, match=r"^f: the IDX header: declares 1099511627776 bytes uncompressed, "
                                        r"more than its \d+ compressed bytes can hold$"):
        read_idx(tmp_path / "gz", "f")


def test_gzip_idx_declaring_more_than_its_data(tmp_path):
    header = struct.pack(">2xBB1I", 0x08, 1, 1_000_000)
    (tmp_path / "gz").write_bytes(gzip.compress(header + bytes(10)) + bytes(200_000))
    with pytest.raises(DataError, match="^f: "):
        read_idx(tmp_path / "gz", "f")


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _lying_npy(shape: tuple, dtype: str = "<f8", data: bytes = bytes(64)) -> bytes:
    """An .npy file whose header declares ``shape`` over ``data``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


@pytest.mark.parametrize("shape", [(2**62, 2**62), (2**40,), (10**6, 10**6), (-1, 4), (9, 1)])
def test_npy_header_declaring_more_than_the_file(tmp_path, shape):
    (tmp_path / "x.npy").write_bytes(_lying_npy(shape))
    for mmap in (False, True):
        with pytest.raises(DataError, match=r"^f: (truncated: the header promises|"
                                            r"the header declares an impossible)"):
            read_npy(tmp_path / "x.npy", "f", mmap=mmap)


@pytest.mark.filterwarnings("error")
def test_npy_header_with_an_odd_escape_prints_no_warning(tmp_path):
    """Found by fuzzing: numpy evaluates the header text, and '\\S' in it warned."""
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'x': '\\S'}"
    header += b" " * (117 - len(header)) + b"\n"
    magic = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
    (tmp_path / "w.npy").write_bytes(magic + header + bytes(16))
    with pytest.raises(DataError, match=r"^w.npy: not a readable .npy array \(Header does not contain"):
        read_npy(tmp_path / "w.npy", "w.npy")


def test_npz_bomb_is_refused_before_inflating(tmp_path):
    """A deflated member declaring 2 GiB of zeros, its stored sizes edited to match."""
    with zipfile.ZipFile(tmp_path / "b.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("X.npy", _lying_npy((1 << 28,), data=bytes(1 << 20)))
        archive.writestr("y.npy", _npy_bytes(np.zeros(1)))
    raw = bytearray((tmp_path / "b.npz").read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local and central headers
        at = raw.find(signature)
        raw[at + offset:at + offset + 4] = struct.pack("<I", 0xFFFFFFF0)
    (tmp_path / "b.npz").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"^f: X: declares \d+ bytes uncompressed, more than its \d+ "
                                        r"compressed bytes can hold$"):
        read_npz(tmp_path / "b.npz", "f", "X", "y")


def test_npz_member_whose_header_lies_about_its_shape(tmp_path):
    for shape, message in (((2**62, 2**62), r"the header declares an impossible shape"),
                           ((2**20, 2**20), r"truncated: the header promises 8796093022208 bytes of data, "
                                            r"found 64$")):
        with zipfile.ZipFile(tmp_path / "l.npz", "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("X.npy", _lying_npy(shape))
            archive.writestr("y.npy", _npy_bytes(np.zeros(1)))
        with pytest.raises(DataError, match=rf"^f: X: {message}"):
            read_npz(tmp_path / "l.npz", "f", "X", "y")


def test_npz_with_another_compression_method(tmp_path):
    with zipfile.ZipFile(tmp_path / "z.npz", "w", zipfile.ZIP_LZMA) as archive:
        archive.writestr("X.npy", _npy_bytes(np.zeros((2, 2))))
        archive.writestr("y.npy", _npy_bytes(np.zeros(2)))
    with pytest.raises(DataError, match=r"^f: X: compression method 14 is not one numpy writes"):
        read_npz(tmp_path / "z.npz", "f", "X", "y")


# --- values beyond float32 -----------------------------------------------------------


def test_float64_beyond_float32_is_named_like_nan_and_inf(tmp_path):
    (tmp_path / "big.csv").write_text("a,b,y\n1,2,0\n3,1e39,1\n", encoding="utf-8")
    table = read_csv(tmp_path / "big.csv", "big.csv", "y", None)
    with pytest.raises(DataError, match=r"^big.csv: row 3, column 'b': value is 1e\+39, beyond the float32 "
                                        r"range \(±3\.403e\+38\)$"):
        table.check_finite()
    np.savez(tmp_path / "big.npz", X=np.array([[1.0, -1e300]]), y=np.array([0.5]))
    with pytest.raises(DataError, match=r"^big.npz: X\[0, 1\]: value is -1e\+300, beyond the float32 range"):
        read_npz(tmp_path / "big.npz", "big.npz", "X", "y").check_finite()


def test_float16_inf_is_found(tmp_path):
    """Found by fuzzing: comparing float16 values with the float32 limit overflowed to inf."""
    np.savez(tmp_path / "h.npz", X=np.array([[1, np.inf]], np.float16), y=np.array([0]))
    with pytest.raises(DataError, match=r"^h.npz: X\[0, 1\]: value is inf$"):
        read_npz(tmp_path / "h.npz", "h.npz", "X", "y").check_finite()


def test_regression_target_beyond_float32(tmp_path):
    from nnback.data.labels import regression_targets

    (tmp_path / "t.csv").write_text("a,y\n1,2.5\n2,-4e38\n", encoding="utf-8")
    table = read_csv(tmp_path / "t.csv", "t.csv", "y", None, task="regression")
    with pytest.raises(DataError, match=r"^t.csv: row 3, column 'y': value is -4e\+38, beyond the float32"):
        regression_targets(table)


def test_training_on_values_beyond_float32_is_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").write_text("a,b,y\n" + "1,2,0\n3,4,1\n" * 10 + "5,1e300,0\n", encoding="utf-8")
    (tmp_path / "cfg.yaml").write_text(
        "name: x\ndata: {source: d.csv, target: y}\nmodel: {mlp: {hidden: [4]}}\n"
        "loss: softmax_cross_entropy\noptimizer: {type: sgd, lr: 0.1}\n", encoding="utf-8")
    one_error(invoke("train", "cfg.yaml"), "d.csv: row 22, column 'b': value is 1e+300, beyond the float32")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("values, message", [
    ([[1.0, 1e39]], "X[0, 1]: value is 1e+39, beyond the float32 range"),
    ([[1.0, np.nan]], "X[0, 1]: value is NaN"),
    ([[3e38, -3e38]], "row 0 of the inputs (counting from 0): the network's outputs are not finite"),
])
def test_predict_refuses_inputs_that_would_give_nan_predictions(tmp_path, completed_run, values, message):
    _, run = completed_run()
    np.save(tmp_path / "in.npy", np.array(values))
    line = one_error(invoke("predict", run, tmp_path / "in.npy"), f"{tmp_path / 'in.npy'}: ")
    assert message in line


def test_eval_refuses_a_non_finite_loss(tmp_path, completed_run):
    _, run = completed_run()
    np.savez(tmp_path / "e.npz", X=np.array([[3e38, -3e38], [0.0, 0.0]]), y=np.array([0, 1]))
    one_error(invoke("eval", run, "--data", tmp_path / "e.npz"),
              f"{tmp_path / 'e.npz'}: the loss on the data rows is")


# --- CSV headers ---------------------------------------------------------------------


def test_duplicate_column_names_are_named(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,a,y,b\n1,2,3,0,4\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"^d.csv: the header names columns 'a', 'b' more than once$"):
        read_csv(tmp_path / "d.csv", "d.csv", "y", None)
    (tmp_path / "e.csv").write_text("a, a ,y\n1,2,0\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"^e.csv: the header names column 'a' more than once$"):
        read_csv(tmp_path / "e.csv", "e.csv", "y", ["a"])


def test_column_names_with_control_characters(tmp_path):
    """Found by fuzzing: a quoted newline in a name split the error message in two."""
    (tmp_path / "q.csv").write_text('"a\nb",y\n1,0\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"^q.csv: row 1: column name 'a\\nb' holds a control character$"):
        read_csv(tmp_path / "q.csv", "q.csv", "y", None)
    with zipfile.ZipFile(tmp_path / "k.npz", "w") as archive:
        archive.writestr("x\ny.npy", _npy_bytes(np.zeros(2)))
    with pytest.raises(DataError, match=r"^k.npz: no array 'X' \(arrays: 'x\\ny'\)$"):
        read_npz(tmp_path / "k.npz", "k.npz", "X", "y")


def test_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufeffa,b,y\n1,2,0\n3,4,1\n".encode("utf-8"))
    table = read_csv(tmp_path / "bom.csv", "bom.csv", "y", ["a", "b"])
    assert table.feature_names == ["a", "b"]
    np.testing.assert_array_equal(table.X, [[1, 2], [3, 4]])


@pytest.mark.parametrize("first", ["1,2,0", "1.5,-2e3,0", " 1 , 2 , 0 ", "nan,inf,0"])
def test_a_first_row_of_numbers_is_not_taken_as_a_header(tmp_path, first):
    (tmp_path / "n.csv").write_text(f"{first}\n3,4,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"^n.csv: row 1 holds only numbers, but the first row must be a "
                                        r"header naming the columns \(e.g. x0,x1,x2\); add one$"):
        read_csv(tmp_path / "n.csv", "n.csv", None, None)


def test_predict_on_a_csv_without_header_says_so_instead_of_dropping_a_row(tmp_path, completed_run):
    _, run = completed_run()  # trained on a generator: no feature names
    (tmp_path / "bare.csv").write_text("0.1,0.2\n0.3,0.4\n", encoding="utf-8")
    one_error(invoke("predict", run, tmp_path / "bare.csv"),
              f"{tmp_path / 'bare.csv'}: row 1 holds only numbers, but the first row must be a header")
    (tmp_path / "named.csv").write_text("x0,x1\n0.1,0.2\n0.3,0.4\n", encoding="utf-8")
    result = invoke("predict", run, tmp_path / "named.csv")
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 3  # header and both rows

