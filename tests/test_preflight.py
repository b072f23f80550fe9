import os
import shutil
from types import SimpleNamespace

import pytest

from nnback.config.timeparse import parse_duration
from nnback.errors import EXIT_USAGE, NnbackError, RunIOError
from nnback.runfolder.preflight import check_free_space, check_output_file, check_writable


def test_check_writable_creates_folder_and_leaves_nothing(tmp_path):
    folder = tmp_path / "runs" / "x"
    check_writable(folder)
    assert folder.is_dir()
    assert list(folder.iterdir()) == []


def test_folder_under_a_regular_file_is_a_user_error(tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(NnbackError) as info:
        check_writable(tmp_path / "runs" / "x")
    assert str(info.value) == f"{tmp_path / 'runs' / 'x'}: a part of this path is a file, not a folder"
    assert info.value.exit_code == EXIT_USAGE


def test_folder_that_is_a_regular_file_is_a_user_error(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(NnbackError, match=r": is a file, not a folder; choose another folder$") as info:
        check_writable(tmp_path / "x")
    assert info.value.exit_code == EXIT_USAGE


def test_a_name_too_long_is_a_user_error(tmp_path):
    with pytest.raises(NnbackError, match=r": a name in this path is too long for the file system$") as info:
        check_writable(tmp_path / ("x" * 300) / "run")
    assert info.value.exit_code == EXIT_USAGE
    with pytest.raises(NnbackError, match=r": a name in this path is too long for the file system$"):
        check_output_file(tmp_path / ("x" * 300) / "p.csv")


def test_output_file_paths_the_user_got_wrong(tmp_path):
    (tmp_path / "file").write_text("")
    (tmp_path / "folder").mkdir()
    check_output_file(tmp_path / "p.csv")
    check_output_file(tmp_path / "file")  # replaced when written
    for path, message in [
        (tmp_path / "no" / "p.csv", f"no folder {tmp_path / 'no'} to write it in; create it first"),
        (tmp_path / "file" / "p.csv", "a part of this path is a file, not a folder"),
        (tmp_path / "file" / "a" / "p.csv", "a part of this path is a file, not a folder"),
        (tmp_path / "folder", "is a folder; give a file name"),
    ]:
        with pytest.raises(NnbackError) as info:
            check_output_file(path)
        assert (str(info.value), info.value.exit_code) == (f"{path}: {message}", EXIT_USAGE)


def test_folder_in_proc_is_reported():
    with pytest.raises(RunIOError, match=r"^/proc/nnback-run: cannot write: "):
        check_writable("/proc/nnback-run")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_folder_is_reported(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    try:
        with pytest.raises(RunIOError, match=r"cannot write: Permission denied$"):
            check_writable(folder)
    finally:
        folder.chmod(0o700)


def test_free_space(tmp_path):
    check_free_space(tmp_path / "not" / "yet", 1)
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(RunIOError, match=rf"^{tmp_path}: only .+ free, need ~.+B$"):
        check_free_space(tmp_path, free + 10**15)


def test_free_space_message(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=12 * 10**6))
    with pytest.raises(RunIOError) as info:
        check_free_space(tmp_path, 40 * 10**6)
    assert str(info.value) == f"{tmp_path}: only 12 MB free, need ~40 MB"


@pytest.mark.parametrize(
    "text, seconds",
    [("30m", 1800.0), ("2h", 7200.0), ("90s", 90.0), ("1h30m", 5400.0), ("45", 45.0),
     ("1.5h", 5400.0), ("1h 30m 15s", 5415.0), (" 2H ", 7200.0), ("1d", 86400.0), (600, 600.0), (0.5, 0.5)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "30x", "m", "1h1h", "30m1h", "-5", "h30", "1 h 30", True, -1.0,
                                  float("inf")])
def test_parse_duration_rejects_garbage(text):
    message = r"^invalid duration .*: use e\.g\. 90s, 30m, 2h, 1h30m or 45 \(seconds\)$"
    with pytest.raises(ValueError, match=message):
        parse_duration(text)
