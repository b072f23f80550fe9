"""Crash-safe writes: a file is always either its old complete version or its new one.

Every writer fills a temporary file in the target's folder, flushes and fsyncs it, renames
it over the target with ``os.replace`` (atomic on POSIX) and fsyncs the folder so that the
rename itself survives a power cut. Any failure removes the temporary file and leaves the
target untouched; operating-system errors become one-line ``RunIOError`` messages such as
``runs/x/summary.json: cannot write: No space left on device``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from nnback.errors import RunIOError

# Every temporary file ends with this, so leftovers of a killed writer can be found.
TEMP_SUFFIX = ".nnback.tmp"

# fsync on a folder fails with these where the file system cannot sync folders (or the
# folder cannot be opened for reading); the rename has happened, so they are not errors.
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES, errno.EBADF}


def io_error(path: str | os.PathLike, exc: OSError) -> RunIOError:
    """The one-line ``RunIOError`` ``"<path>: cannot write: <reason>"`` for ``exc``."""
    return RunIOError(f"{os.fspath(path)}: cannot write: {exc.strerror or exc}")


@functools.cache
def _new_file_mode() -> int:
    """Permission bits of a newly created file (0o666 minus the umask), read once."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush ``folder``'s entries (renames, new names) to disk, where supported."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in _DIR_FSYNC_UNSUPPORTED:
            return
        raise io_error(folder, exc) from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise io_error(folder, exc) from exc
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Replace ``path`` atomically with what ``write(f)`` writes into a binary file ``f``.

    If ``write`` or any later step raises, the temporary file is removed, ``path`` keeps
    its old content (or stays absent) and the exception propagates, an ``OSError`` as
    ``RunIOError`` naming ``path``.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise io_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _new_file_mode())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise io_error(path, exc) from exc
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` atomically with ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Replace ``path`` atomically with ``obj`` as indented JSON and a final newline.

    ``obj`` is serialised before anything is written, so a value JSON cannot hold raises
    ``TypeError`` and leaves no trace on disk.
    """
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Replace ``path`` atomically with an uncompressed ``.npz`` of ``arrays``.

    Args:
        arrays: name -> array; names may contain ``/`` and ``.``. Object arrays are
            refused (``TypeError``): they would need pickle to load.
    """
    for name, array in arrays.items():
        if np.asarray(array).dtype.hasobject:
            raise TypeError(f"array {name!r} has an object dtype; only plain arrays can be saved")
    atomic_write(path, lambda f: np.savez(f, **arrays))


def remove_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder``; return them.

    Call only while holding the run folder's lock: a live writer's file would go too.
    """
    return [path for path in sorted(Path(folder).glob(f".*{TEMP_SUFFIX}")) if remove_file(path)]


def remove_file(path: str | os.PathLike) -> bool:
    """Delete ``path``; ``False`` if it was already gone, ``RunIOError`` if it cannot go."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise io_error(path, exc) from exc
    return True
