"""Opening files nnback did not write itself, so that hostile ones fail fast.

Every reader of a user's file (the experiment YAML, data files, the files of a run
folder) opens it here:

- only regular files are opened: a FIFO would block for ever and a device such as
  ``/dev/zero`` never ends. The type is checked with ``os.stat`` before opening and
  again on the open descriptor (opened non-blocking, so a file swapped for a FIFO in
  between cannot hang it either);
- sizes are checked before reading: a text file against its limit, an array's
  declared size (computed with Python integers, so it cannot overflow) against the
  bytes present, and compressed data's declared size against what its compressed
  bytes can hold (deflate's ratio is at most 1032:1) and the memory budget, so a
  decompression bomb is refused before it is inflated, and inflating stops at the
  declared size.

Problems raise the caller's error class (``DataError`` by default) with one line
``"<origin>: <problem>"``. Imports only numpy.
"""

from __future__ import annotations

import contextlib
import functools
import lzma
import math
import os
import stat
import struct
import tokenize
import warnings
import zipfile
import zlib
from typing import BinaryIO

import numpy as np

from nnback.errors import DataError, NnbackError

_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
DEFLATE_RATIO = 1032
# What numpy's header parser (ast.literal_eval of the header text) raises for bad headers.
_HEADER_ERRORS = (ValueError, EOFError, SyntaxError, TypeError, tokenize.TokenError, RecursionError)
_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def is_int(value) -> bool:
    """True for a JSON integer (a Python int, not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """True for a finite JSON number (int or float, not a bool, not NaN or infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def shown(names) -> str:
    """Names from a file, comma-separated for a message; any with a control character
    (a newline would break the one-line message) in quotes with escapes."""
    return ", ".join(name if name.isprintable() else repr(name) for name in names)


def os_error(origin: str, exc: OSError, error: type[NnbackError] = DataError) -> NnbackError:
    """The one-line error for a file that cannot be opened or read."""
    if isinstance(exc, FileNotFoundError):
        return error(f"{origin}: file not found")
    return error(f"{origin}: cannot read ({exc.strerror or exc})")


def _check_regular(mode: int, origin: str, error: type[NnbackError]) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "a special file")
        raise error(f"{origin}: is {kind}, expected a regular file")


def open_regular(path: str | os.PathLike, origin: str, error: type[NnbackError] = DataError) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file (symbolic links followed).

    Raises:
        error: missing, unreadable, or not a regular file (folder, FIFO, device, socket).
    """
    try:
        _check_regular(os.stat(path).st_mode, origin, error)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise os_error(origin, exc, error) from None
    try:
        _check_regular(os.fstat(fd).st_mode, origin, error)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def file_size(f: BinaryIO) -> int:
    """Size in bytes of an open regular file."""
    return os.fstat(f.fileno()).st_size


def read_limited(path: str | os.PathLike, origin: str, limit: int, what: str,
                 error: type[NnbackError] = DataError) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Args:
        what: the kind of file in the message, e.g. "an experiment file".
    """
    with open_regular(path, origin, error) as f:
        size = file_size(f)
        data = f.read(limit + 1) if size <= limit else b""
    if size > limit or len(data) > limit:
        raise error(f"{origin}: {max(size, len(data))} bytes is too large for {what} "
                    f"(at most {limit})")
    return data


@functools.cache
def memory_budget() -> int:
    """Bytes one array may take when its size is not bounded by a file's size: half
    the machine's physical memory (4 GiB where that cannot be read)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 1 << 32


def check_inflated_size(declared: int, compressed: int, where: str,
                        error: type[NnbackError] = DataError) -> None:
    """Refuse compressed data that declares more bytes than ``compressed`` bytes of
    deflate data can hold (deflate's ratio is at most 1032:1) or than ``memory_budget()``."""
    if declared > compressed * DEFLATE_RATIO + 1024:
        raise error(f"{where}: declares {declared} bytes uncompressed, more than its {compressed} "
                    "compressed bytes can hold")
    if declared > memory_budget():
        raise error(f"{where}: declares {declared} bytes uncompressed, more than the memory "
                    f"budget ({memory_budget()} bytes, half the machine's memory)")


def read_at_most(stream: BinaryIO, limit: int) -> bytearray:
    """Up to ``limit`` + 1 bytes of ``stream``, read in chunks: memory follows the data
    that is there, not the size asked for."""
    out = bytearray()
    while len(out) <= limit:
        chunk = stream.read(min(1 << 24, limit + 1 - len(out)))
        if not chunk:
            break
        out += chunk
    return out


def array_nbytes(shape: tuple, dtype: np.dtype, origin: str, error: type[NnbackError] = DataError) -> int:
    """Bytes of an array of ``shape`` and ``dtype`` as declared by a file's header, exact.

    Raises:
        error: a negative dimension, or a shape numpy cannot create even when empty (the
            dimensions other than 0 multiply beyond 2**63 bytes).
    """
    if any(n < 0 for n in shape) or math.prod(max(n, 1) for n in shape) * max(dtype.itemsize, 1) >= 2**63:
        raise error(f"{origin}: the header declares an impossible shape {shape}")
    return math.prod(shape) * dtype.itemsize


@contextlib.contextmanager
def _quiet_header_parsing():
    """numpy parses a header's text as a Python literal: an odd escape in it would
    print a DeprecationWarning or SyntaxWarning line; the header is checked anyway."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        yield


def read_npy_header(f: BinaryIO, origin: str, available: int,
                    error: type[NnbackError] = DataError) -> tuple[tuple, bool, np.dtype, int]:
    """Read and check the header of the ``.npy`` data at ``f``'s position.

    Args:
        available: bytes from ``f``'s position to the end of the data.

    Returns:
        (shape, fortran_order, dtype, header bytes).

    Raises:
        error: not an .npy header, an impossible shape, an object dtype, or more data
            declared than ``available`` (truncated or lying header).
    """
    start = f.tell()
    try:
        version = np.lib.format.read_magic(f)
        if version not in _HEADER_READERS:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
        with _quiet_header_parsing():
            shape, fortran, dtype = _HEADER_READERS[version](f)
    except _HEADER_ERRORS as exc:
        raise error(f"{origin}: not a readable .npy array ({_one_line(exc)})") from None
    header = f.tell() - start
    if dtype.hasobject:
        raise error(f"{origin}: holds Python objects, which nnback does not load (only plain numbers)")
    needed = array_nbytes(shape, dtype, origin, error)
    if needed > available - header:
        raise error(f"{origin}: truncated: the header promises {needed} bytes of data, "
                    f"found {max(available - header, 0)}")
    return shape, fortran, dtype, header


def load_npy(path: str | os.PathLike, origin: str, error: type[NnbackError] = DataError) -> np.ndarray:
    """The array of a ``.npy`` file, its header checked against the file's size first."""
    with open_regular(path, origin, error) as f:
        read_npy_header(f, origin, file_size(f), error)
        f.seek(0)
        try:
            with _quiet_header_parsing():
                return np.load(f, allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:
            raise error(f"{origin}: not a readable .npy file ({_one_line(exc)})") from None


def load_npz(path: str | os.PathLike, origin: str, keys: list[str] | None = None,
             error: type[NnbackError] = DataError) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` file: those named in ``keys`` (all if None), in that order.

    Each member's header is checked before its array is allocated: the data it declares
    must fit in the member's declared size, and a compressed member may declare at
    most ``memory_budget()`` bytes; ``zipfile`` never inflates beyond that size.

    Raises:
        error: not a zip archive, a missing key (the message lists the arrays), a
            damaged member (CRC mismatch, truncated) or a size check failing.
    """
    with open_regular(path, origin, error) as f:
        size = file_size(f)
        try:
            with zipfile.ZipFile(f) as archive:
                members = {name.removesuffix(".npy"): archive.getinfo(name) for name in archive.namelist()}
                for key in keys or []:
                    if key not in members:
                        raise error(f"{origin}: no array '{key}' (arrays: {shown(members) or 'none'})")
                return {key: _member(archive, members[key], f"{origin}: {key}", size, error)
                        for key in (keys if keys is not None else members)}
        except _ZIP_ERRORS as exc:
            if "CRC" in str(exc):
                raise error(f"{origin}: checksum mismatch (file corrupted)") from None
            raise error(f"{origin}: truncated or not an .npz file ({_one_line(exc)})") from None


# What zipfile, zlib, lzma, bz2 and numpy raise for damaged or hostile archives.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError,
               RuntimeError, OSError, zlib.error, lzma.LZMAError, struct.error)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, archive_size: int,
            error: type[NnbackError]) -> np.ndarray:
    """One checked member of an npz archive (stored or deflated, as numpy writes them)."""
    if info.compress_type == zipfile.ZIP_DEFLATED:
        check_inflated_size(info.file_size, min(info.compress_size, archive_size), where, error)
    elif info.compress_type != zipfile.ZIP_STORED:
        raise error(f"{where}: compression method {info.compress_type} is not one numpy writes "
                    "(stored or deflated)")
    elif info.file_size > archive_size:
        raise error(f"{where}: declares {info.file_size} bytes, more than the archive holds")
    with archive.open(info) as member:
        read_npy_header(member, where, info.file_size, error)
    with archive.open(info) as member:
        with _quiet_header_parsing():
            return np.lib.format.read_array(member, allow_pickle=False)
