import json
import os

import numpy as np
import pytest

from nnback.errors import RunIOError
from nnback.runfolder import atomic
from nnback.runfolder.atomic import (
    TEMP_SUFFIX,
    atomic_save_npz,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    remove_temp_files,
)


def _temp_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX))


def test_writers_replace_content(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "a.txt", "héllo\n")
    atomic_write_json(tmp_path / "a.json", {"status": "completed", "epochs": 3})
    atomic_write_json(tmp_path / "a.json", {"status": "interrupted"})
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert json.loads((tmp_path / "a.json").read_text()) == {"status": "interrupted"}
    assert _temp_files(tmp_path) == []


def test_new_file_gets_umask_permissions_not_private_temp_mode(tmp_path):
    atomic_write_text(tmp_path / "config.yaml", "seed: 0\n")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "config.yaml").stat().st_mode & 0o777 == 0o666 & ~umask


def test_failure_midway_keeps_old_content_and_removes_temp(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")

    def write_then_fail(f):
        f.write(b"half a new fi")
        raise RuntimeError("serialiser crashed")

    with pytest.raises(RuntimeError, match="serialiser crashed"):
        atomic_write(target, write_then_fail)
    assert target.read_text() == "old"
    assert _temp_files(tmp_path) == []


def test_unserialisable_json_keeps_old_content(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert target.read_text() == "old"
    assert _temp_files(tmp_path) == []


def test_failing_replace_becomes_run_io_error(tmp_path, monkeypatch):
    target = tmp_path / "model.npz"
    target.write_bytes(b"old")

    def no_space(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", no_space)
    with pytest.raises(RunIOError) as info:
        atomic_save_npz(target, {"param/0.W": np.ones((2, 2))})
    assert str(info.value) == f"{target}: cannot write: No space left on device"
    assert target.read_bytes() == b"old"
    assert _temp_files(tmp_path) == []


def test_missing_folder_is_run_io_error(tmp_path):
    with pytest.raises(RunIOError, match="cannot write: No such file or directory"):
        atomic_write_text(tmp_path / "absent" / "x.txt", "x")


def test_npz_round_trip_without_pickle(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"param/0.W": rng.standard_normal((3, 4)).astype(np.float32), "prep/mean": np.arange(4)}
    atomic_save_npz(tmp_path / "m.npz", arrays)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(arrays)
        for name, array in arrays.items():
            np.testing.assert_array_equal(npz[name], array)
            assert npz[name].dtype == array.dtype


def test_npz_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="'classes' has an object dtype"):
        atomic_save_npz(tmp_path / "m.npz", {"classes": np.array([1, "a"], dtype=object)})
    assert list(tmp_path.iterdir()) == []


def test_remove_temp_files_removes_only_leftovers(tmp_path):
    leftover = tmp_path / f".last.npz.abc{TEMP_SUFFIX}"
    leftover.write_bytes(b"partial")
    (tmp_path / "last.npz").write_bytes(b"keep")
    assert remove_temp_files(tmp_path) == [leftover]
    assert [p.name for p in tmp_path.iterdir()] == ["last.npz"]
