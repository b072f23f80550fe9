"""JSON Lines logs (``metrics.jsonl``) that a kill can damage only at the very end, and
the run folder's plain JSON files (``summary.json``).

Each record is one line written by a single ``os.write`` on an ``O_APPEND`` descriptor,
so a killed writer leaves at most its last line incomplete; readers skip such a line.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nnback.errors import NnbackError, one_line
from nnback.runfolder.atomic import atomic_write_bytes, io_error
from nnback.untrusted import open_regular, read_limited

logger = logging.getLogger(__name__)

MAX_JSON_BYTES = 1 << 20  # a summary.json is a few kilobytes

_CHUNK = 65536


def _plain(value: Any) -> Any:
    """JSON stand-in for numpy scalars and arrays (``json.dumps`` ``default`` hook)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_record(record: Mapping[str, Any]) -> bytes:
    """``record`` as one UTF-8 JSON line ending in ``\\n``."""
    return (json.dumps(record, default=_plain) + "\n").encode("utf-8")


class JsonlWriter:
    """Appends one JSON object per line to ``path``.

    Opening cuts off an incomplete last line left by a killed writer, so new records
    start on a line of their own.

    Args:
        path: the ``.jsonl`` file, created if missing.
        sync: fsync after every record (durable against power loss, slower).
    """

    def __init__(self, path: str | os.PathLike, sync: bool = False):
        self.path = Path(path)
        self.sync = sync
        try:
            # Never through a symbolic link: a log outside the run folder is not the run's.
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            raise io_error(self.path, exc) from exc
        try:
            _cut_incomplete_last_line(self._fd)
        except OSError as exc:
            self.close()
            raise io_error(self.path, exc) from exc

    def write(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` (JSON-able; numpy scalars allowed) as one line."""
        line = encode_record(record)
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(f"wrote {written} of {len(line)} bytes (disk full?)")
            if self.sync:
                os.fsync(self._fd)
        except OSError as exc:
            raise io_error(self.path, exc) from exc

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _cut_incomplete_last_line(fd: int) -> None:
    """Truncate the file at ``fd`` after its last ``\\n`` (to empty if it has none)."""
    end = os.fstat(fd).st_size
    if end == 0 or os.pread(fd, 1, end - 1) == b"\n":
        return
    while end > 0:
        start = max(0, end - _CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            os.ftruncate(fd, start + newline + 1)
            return
        end = start
    os.ftruncate(fd, 0)


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in ``path``; None if the file is missing or holds no object.

    Raises:
        NnbackError: ``"<path>: cannot read: <reason>"`` for an unreadable or invalid file
            (nested too deep for the parser too), one that is not a regular file or
            larger than MAX_JSON_BYTES.
    """
    if not os.path.lexists(path):
        return None
    data = read_limited(path, os.fspath(path), MAX_JSON_BYTES, "a JSON file", NnbackError)
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise NnbackError(f"{path}: cannot read: {type(exc).__name__}: {exc}"[:300]) from None
    return value if isinstance(value, dict) else None


def read_jsonl(path: str | os.PathLike, missing_ok: bool = False) -> list[dict[str, Any]]:
    """The JSON objects of ``path``, one per line, in order.

    An invalid last line (a writer killed mid-line) is skipped silently; an invalid line
    elsewhere (nested too deep for the parser too) is skipped with a logged warning
    ``"<path>:<line>: invalid JSON line skipped"``. Blank lines are ignored. With
    ``missing_ok``, a missing file reads as [].

    Raises:
        FileNotFoundError: the file is missing (without ``missing_ok``).
        NnbackError: it is not a regular file (a FIFO, a device) or cannot be read.
    """
    if not os.path.lexists(path):
        if missing_ok:
            return []
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), os.fspath(path))
    with open_regular(path, os.fspath(path), NnbackError) as f:
        lines = f.read().split(b"\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif i != last:
            logger.warning("%s:%d: invalid JSON line skipped", one_line(str(path)), i + 1)
    return records


def truncate_after(path: str | os.PathLike, step: int) -> list[dict[str, Any]]:
    """Drop the records of ``path`` whose ``"step"`` is beyond ``step``, atomically.

    Used on resume so the log matches the checkpoint resumed from. Records without a
    ``"step"`` are kept; invalid lines are dropped. Call it before a ``JsonlWriter``
    opens ``path`` (the file is replaced, not edited). A missing file is left missing.

    Returns:
        the records kept.
    """
    try:
        records = read_jsonl(path)
    except FileNotFoundError:
        return []
    kept = [r for r in records if not isinstance(r.get("step"), (int, float)) or r["step"] <= step]
    atomic_write_bytes(path, b"".join(map(encode_record, kept)))
    return kept
