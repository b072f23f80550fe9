"""Checks on where output goes, made before the work starts, not an hour into it.

A path the user got wrong (a file where a folder belongs, a folder that does not exist)
is a user error, exit 2; a folder that cannot be written (permissions, a full disk) is a
``RunIOError``, exit 6.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

from nnback.errors import NnbackError, RunIOError
from nnback.formatting import format_bytes
from nnback.runfolder.atomic import TEMP_SUFFIX, io_error


def check_writable(folder: str | os.PathLike) -> None:
    """Create ``folder`` if needed and prove a file can be written, synced and removed.

    Raises:
        NnbackError: ``folder`` or a part of its path is a file.
        RunIOError: ``"runs/x: cannot write: Permission denied"`` (or the OS reason).
    """
    folder = Path(folder)
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise NnbackError(f"{folder}: is a file, not a folder; choose another folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise path_error(folder, exc) from None
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe.", suffix=TEMP_SUFFIX)
        try:
            os.write(fd, b"nnback write probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):  # cleared by the run holding the lock
                os.unlink(probe)
    except OSError as exc:
        raise io_error(folder, exc) from exc


def check_output_file(path: str | os.PathLike) -> None:
    """Refuse a file to write whose folder does not exist or is a file, or that is itself
    a folder, before the work that produces it.

    Raises:
        NnbackError: ``"out/p.csv: no folder out to write it in; create it first"``.
    """
    path = Path(path)
    if os.path.isdir(path):
        raise NnbackError(f"{path}: is a folder; give a file name")
    parent = path.parent
    try:
        is_folder = stat.S_ISDIR(os.stat(parent).st_mode)
    except FileNotFoundError:
        raise NnbackError(f"{path}: no folder {parent} to write it in; create it first") from None
    except OSError as exc:
        raise path_error(path, exc) from None
    if not is_folder:
        raise NnbackError(f"{path}: a part of this path is a file, not a folder")


def path_error(path: str | os.PathLike, exc: OSError) -> NnbackError:
    """A path the user got wrong (a file where a folder belongs, a name too long) as a
    user error; any other failure to write as a RunIOError."""
    if exc.errno == errno.ENOTDIR:
        return NnbackError(f"{path}: a part of this path is a file, not a folder")
    if exc.errno == errno.ENAMETOOLONG:
        return NnbackError(f"{path}: a name in this path is too long for the file system")
    return io_error(path, exc)


def check_no_links(folder: str | os.PathLike, names) -> None:
    """Refuse a run folder where any of ``names``, or a file inside one of them that is
    a folder, is a symbolic link: a run never writes through, nor reads from, a link.

    Raises:
        NnbackError: ``"runs/x/metrics.jsonl: is a symbolic link; ..."``.
    """
    folder = Path(folder)
    for name in names:
        path = folder / name
        inside = sorted(path.iterdir()) if path.is_dir() and not path.is_symlink() else []
        for candidate in (path, *inside):
            if candidate.is_symlink():
                raise NnbackError(f"{candidate}: is a symbolic link; a run folder holds only files "
                                  f"nnback wrote (remove the link or choose another --out)")


def check_free_space(folder: str | os.PathLike, needed_bytes: int) -> None:
    """Raise if the file system holding ``folder`` has less than ``needed_bytes`` free.

    ``folder`` need not exist yet: its nearest existing parent is measured.

    Raises:
        RunIOError: ``"runs/x: only 12 MB free, need ~40 MB"``.
    """
    existing = Path(folder).absolute()
    while not existing.exists():
        existing = existing.parent
    try:
        free = shutil.disk_usage(existing).free
    except OSError as exc:
        raise RunIOError(f"{folder}: cannot measure free space: {exc.strerror or exc}") from exc
    if free < needed_bytes:
        raise RunIOError(f"{folder}: only {format_bytes(free, si=True)} free, "
                         f"need ~{format_bytes(needed_bytes, si=True)}")
