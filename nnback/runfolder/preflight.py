"""Checks on the run folder made before training starts, not an hour into it."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from nnback.errors import NnbackError, RunIOError
from nnback.formatting import format_bytes
from nnback.runfolder.atomic import TEMP_SUFFIX, io_error


def check_writable(folder: str | os.PathLike) -> None:
    """Create ``folder`` if needed and prove a file can be written, synced and removed.

    Raises:
        RunIOError: ``"runs/x: cannot write: Permission denied"`` (or the OS reason).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunIOError(f"{folder}: cannot write: not a directory")
    try:
        folder.mkdir(parents=True, exist_ok=True)
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
