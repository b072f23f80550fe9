"""The IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.

Layout: two zero bytes, a type byte, the number of dimensions n, then n big-endian
uint32 sizes, then the values in C order, big-endian. Gzip is recognised by its magic
bytes, whatever the file name.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from nnback.data.table import file_error
from nnback.errors import DataError

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: Path, origin: str) -> np.ndarray:
    """The array stored in an IDX file, in native byte order, e.g. (N, 28, 28) uint8."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise file_error(origin, exc) from None
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{origin}: unreadable gzip data ({exc})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_TYPES or raw[3] == 0:
        raise DataError(f"{origin}: not an IDX file (bad header)")
    ndim = raw[3]
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise DataError(f"{origin}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:start])
    dtype = np.dtype(IDX_TYPES[raw[2]])
    count = int(np.prod(shape, dtype=np.int64))
    expected, found = count * dtype.itemsize, len(raw) - start
    if found != expected:
        problem = "truncated" if found < expected else "trailing bytes"
        raise DataError(f"{origin}: {problem}: the IDX header promises {expected} bytes "
                        f"of data, found {found}")
    values = np.frombuffer(raw, dtype=dtype, count=count, offset=start).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array (uint8, int8, int16, int32, float32 or float64) as IDX."""
    codes = {np.dtype(t).newbyteorder("="): code for code, t in IDX_TYPES.items()}
    code = codes[array.dtype.newbyteorder("=")]
    header = struct.pack(f">2xBB{array.ndim}I", code, array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()
