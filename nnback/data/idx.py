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

from nnback.errors import DataError
from nnback.untrusted import array_nbytes, check_inflated_size, file_size, open_regular, read_at_most

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: Path, origin: str) -> np.ndarray:
    """The array stored in an IDX file, in native byte order, e.g. (N, 28, 28) uint8.

    The header is read first, and no more data than it declares is read: for gzip,
    the declared size must also be one the compressed bytes can hold (deflate's ratio
    is at most 1032:1) within the memory budget, so a decompression bomb stops at
    once or at the size its header declares.
    """
    with open_regular(path, origin) as f:
        compressed = f.read(2) == GZIP_MAGIC
        f.seek(0)
        stream = gzip.GzipFile(fileobj=f, mode="rb") if compressed else f
        try:
            shape, dtype = _header(stream, origin)
            expected = array_nbytes(shape, dtype, origin)
            if compressed:
                check_inflated_size(expected, file_size(f), f"{origin}: the IDX header")
            raw = read_at_most(stream, expected)
        except (OSError, EOFError, zlib.error) as exc:
            what = "unreadable gzip data" if compressed else "cannot read"
            raise DataError(f"{origin}: {what} ({exc})") from None
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "trailing bytes"
        raise DataError(f"{origin}: {problem}: the IDX header promises {expected} bytes "
                        f"of data, found {len(raw) if len(raw) < expected else 'more'}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _header(stream, origin: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the IDX header at the start of ``stream``."""
    magic = stream.read(4)
    if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in IDX_TYPES or magic[3] == 0:
        raise DataError(f"{origin}: not an IDX file (bad header)")
    sizes = stream.read(4 * magic[3])
    if len(sizes) < 4 * magic[3]:
        raise DataError(f"{origin}: truncated IDX header")
    return struct.unpack(f">{magic[3]}I", sizes), np.dtype(IDX_TYPES[magic[2]])


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array (uint8, int8, int16, int32, float32 or float64) as IDX."""
    codes = {np.dtype(t).newbyteorder("="): code for code, t in IDX_TYPES.items()}
    code = codes[array.dtype.newbyteorder("=")]
    header = struct.pack(f">2xBB{array.ndim}I", code, array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()
