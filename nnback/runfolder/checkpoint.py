"""Checkpoints: verified ``.npz`` files and the rotating set kept in a run folder.

A checkpoint is one uncompressed ``.npz`` holding the caller's arrays (keys such as
``"model/0.W"``, ``"model/3.running_mean"``, ``"optim/0.W/exp_avg"``, ``"prep/shift"``)
plus ``"meta"``: a 0-d unicode array with the JSON text of the caller's metadata, the
file's ``"format_version"`` and the SHA-256 ``"checksum"`` of every other array, so it
loads with ``allow_pickle=False`` and a damaged file is detected instead of resumed from.
A file without ``"format_version"`` (written before it was recorded) is version 1; one
of a newer version than ``FORMAT_VERSION`` is refused, never guessed at.

Folder layout managed by ``CheckpointStore``::

    checkpoints/step-000000120.npz   the last ``keep`` saves
    checkpoints/last.npz             an independent copy of the newest save
    checkpoints/best.npz             the best weights so far
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from nnback.errors import CheckpointError
from nnback.runfolder.atomic import atomic_save_npz, atomic_write, io_error, remove_file
from nnback.untrusted import load_npz

META_KEY = "meta"
CHECKSUM_KEY = "checksum"
VERSION_KEY = "format_version"
# The layout of the arrays and meta that this code writes; raise it when that changes
# in a way older code would misread.
FORMAT_VERSION = 1

_STEP_FILE = re.compile(r"step-(\d{9,})\.npz")


class _Unreadable(Exception):
    """A checkpoint cannot be used; the message is the reason, without the path."""


def checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 hex digest over each array's name, dtype, shape and bytes, by sorted name.

    Hashes the arrays' memory directly (a copy only for a non-contiguous array), and the
    result does not depend on memory order or on how the arrays were produced.
    """
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.asarray(arrays[name], order="C")
        header = json.dumps([name, np.lib.format.dtype_to_descr(array.dtype), array.shape])
        digest.update(header.encode() + b"\0")
        digest.update(array.reshape(-1).view(np.uint8))
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                    meta: Mapping[str, Any]) -> None:
    """Write ``arrays`` and ``meta`` (plus their checksum) atomically to ``path``.

    Args:
        arrays: name -> array; the name ``"meta"`` is reserved.
        meta: JSON-able metadata (epoch, step, random state, config, ...); the keys
            ``"format_version"`` and ``"checksum"`` are reserved.
    """
    if META_KEY in arrays:
        raise ValueError(f"array name {META_KEY!r} is reserved for the checkpoint metadata")
    for key in (VERSION_KEY, CHECKSUM_KEY):
        if key in meta:
            raise ValueError(f"meta key {key!r} is reserved for the checkpoint file")
    text = json.dumps({**meta, VERSION_KEY: FORMAT_VERSION, CHECKSUM_KEY: checksum(arrays)})
    atomic_save_npz(path, {**arrays, META_KEY: np.array(text)})


def _read_arrays(path: str | os.PathLike, follow_links: bool) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path``, read fully; ``_Unreadable`` if damaged."""
    if not os.path.lexists(path):
        raise _Unreadable("no such checkpoint")
    if not follow_links and os.path.islink(path):
        raise _Unreadable("is a symbolic link, not followed")
    origin = os.fspath(path)
    try:
        return load_npz(path, origin, error=CheckpointError)
    except CheckpointError as exc:
        raise _Unreadable(str(exc).removeprefix(f"{origin}: ")) from None


def _load(path: str | os.PathLike, follow_links: bool = False) -> tuple[dict[str, np.ndarray],
                                                                        dict[str, Any]]:
    """``load_checkpoint`` raising ``_Unreadable`` with the bare reason."""
    arrays = _read_arrays(path, follow_links)
    text = arrays.pop(META_KEY, None)
    if text is None:
        raise _Unreadable(f"no {META_KEY!r} entry (not an nnback checkpoint)")
    try:
        meta = json.loads(text.item()) if text.ndim == 0 and text.dtype.kind == "U" else None
    except (ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict):
        raise _Unreadable(f"invalid {META_KEY!r} entry (file corrupted)")
    _check_version(path, meta.pop(VERSION_KEY, 1))
    if not isinstance(meta.get(CHECKSUM_KEY), str):
        raise _Unreadable(f"invalid {META_KEY!r} entry (file corrupted)")
    if checksum(arrays) != meta.pop(CHECKSUM_KEY):
        raise _Unreadable("checksum mismatch (file corrupted)")
    return arrays, meta


def _check_version(path: str | os.PathLike, version) -> None:
    """A newer format is refused at once (``CheckpointError``): an older checkpoint beside
    it is no fallback, since resuming from that would drop the newer run's progress."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _Unreadable(f"invalid {VERSION_KEY!r} {version!r} (file corrupted)")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{os.fspath(path)}: written by a newer nnback (format version {version}; "
                              f"this version reads up to {FORMAT_VERSION}): upgrade nnback to use it")


def load_checkpoint(path: str | os.PathLike,
                    follow_links: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify the checkpoint at ``path``.

    Args:
        follow_links: False for the files of a run folder, which are never read through
            a symbolic link (a link is reported as unreadable).

    Returns:
        ``(arrays, meta)`` exactly as given to ``save_checkpoint`` (``meta`` without the
        format version and the checksum).

    Raises:
        CheckpointError: ``"<path>: <reason>"`` for a missing, unreadable, truncated or
            corrupted file, e.g. ``"checkpoints/last.npz: checksum mismatch (file
            corrupted)"``, or one of a newer format version.
    """
    try:
        return _load(path, follow_links)
    except _Unreadable as exc:
        raise CheckpointError(f"{os.fspath(path)}: {exc}") from exc.__cause__


class LatestCheckpoint(NamedTuple):
    """The newest readable checkpoint found by ``CheckpointStore.load_latest``.

    Attributes:
        arrays, meta: as returned by ``load_checkpoint``.
        path: the file they came from.
        skipped: ``(path, reason)`` for each newer checkpoint that was unreadable, e.g.
            ``(Path("runs/x/checkpoints/last.npz"), "checksum mismatch (file corrupted)")``.
    """

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    path: Path
    skipped: list[tuple[Path, str]]

    def warnings(self) -> list[str]:
        """One line per skipped file: ``"<skipped>: <reason>; falling back to <path>"``."""
        return [f"{bad}: {reason}; falling back to {self.path}" for bad, reason in self.skipped]


class CheckpointStore:
    """The ``checkpoints/`` folder of a run: rotating step saves, ``last`` and ``best``.

    Args:
        folder: the run folder; checkpoints go to ``folder/checkpoints``.
        keep: how many ``step-*.npz`` files to keep (>= 1).
    """

    def __init__(self, folder: str | os.PathLike, keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep must be at least 1 (got {keep})")
        self.dir = Path(folder) / "checkpoints"
        self.keep = keep

    @property
    def last_path(self) -> Path:
        return self.dir / "last.npz"

    @property
    def best_path(self) -> Path:
        return self.dir / "best.npz"

    def step_path(self, step: int) -> Path:
        return self.dir / f"step-{step:09d}.npz"

    def step_paths(self) -> list[Path]:
        """The ``step-*.npz`` files present, newest (highest step) first."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        steps = sorted(((int(m[1]), m[0]) for m in map(_STEP_FILE.fullmatch, names) if m), reverse=True)
        return [self.dir / name for _, name in steps]

    def _make_dir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise io_error(self.dir, exc) from exc

    def save(self, step: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
        """Save ``step-{step}.npz``, copy it to ``last.npz``, delete saves beyond ``keep``.

        Each stage is atomic: a kill at any moment leaves ``last.npz`` a complete
        checkpoint (the new one or the previous one). ``last.npz`` is a file of its own,
        not a link, so the ``keep`` step files and it are independent copies: damage to
        one never reaches another. Returns the new file's path.
        """
        if step < 0:
            raise ValueError(f"step must be >= 0 (got {step})")
        self._make_dir()
        path = self.step_path(step)
        save_checkpoint(path, arrays, meta)
        with open(path, "rb") as src:
            atomic_write(self.last_path, lambda dst: shutil.copyfileobj(src, dst))
        for old in self.step_paths()[self.keep:]:
            if old != path:
                remove_file(old)
        return path

    def save_best(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
        """Save ``best.npz`` atomically; returns its path."""
        self._make_dir()
        save_checkpoint(self.best_path, arrays, meta)
        return self.best_path

    def load_latest(self) -> LatestCheckpoint | None:
        """The newest readable checkpoint: ``last.npz``, else ``step-*.npz`` newest first.

        Unreadable files are skipped and listed in ``skipped``. A file met twice (a
        hard link left by an older version) is read only once.

        Returns:
            ``None`` when there is no checkpoint at all.

        Raises:
            CheckpointError: checkpoints exist but none is readable, or one of a newer
                format version is met.
        """
        candidates = [self.last_path, *self.step_paths()]
        skipped: list[tuple[Path, str]] = []
        reasons: dict[tuple[int, int], str] = {}
        for path in candidates:
            try:
                stat = os.lstat(path)
            except FileNotFoundError:
                continue
            identity = (stat.st_dev, stat.st_ino)
            if identity not in reasons:
                try:
                    arrays, meta = _load(path)
                    return LatestCheckpoint(arrays, meta, path, skipped)
                except _Unreadable as exc:
                    reasons[identity] = str(exc)
            skipped.append((path, reasons[identity]))
        if not skipped:
            return None
        details = "; ".join(f"{bad}: {reason}" for bad, reason in skipped)
        raise CheckpointError(f"{self.dir}: no readable checkpoint ({details})")

    def load_best(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """``(arrays, meta)`` of ``best.npz``; ``None`` if there is none.

        Raises:
            CheckpointError: ``best.npz`` exists but is unreadable.
        """
        if not os.path.lexists(self.best_path):
            return None
        return load_checkpoint(self.best_path, follow_links=False)
