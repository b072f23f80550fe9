"""Memory-mapped .npy files whose resident memory stays bounded.

Reading rows of a memory-mapped file maps its pages into the process. The kernel maps
whole page-cache folios around every touched row (up to 2 MiB per random row was
measured here), so gathering random batches would grow the resident set towards the
file size within a few batches, although those pages are only reclaimable cache.
``MappedNpy`` therefore gathers a few rows at a time and drops the map's pages from the
process after each group (``madvise`` DONTNEED; the kernel keeps them in the page
cache), so at most about RESIDENT_BYTES of the file is mapped at once and peak memory
stays independent of the file size. scripts/bench_memmap.py measures it.
"""

from __future__ import annotations

import math
import mmap
from pathlib import Path

import numpy as np

from nnback.errors import DataError
from nnback.untrusted import file_size, open_regular, read_npy_header

RESIDENT_BYTES = 1 << 25
FOLIO_BYTES = 1 << 21


class MappedNpy:
    """A read-only memory map of a C-order .npy file, seen as rows (N, D).

    Args:
        path: the .npy file.
        origin: the file as the user wrote it, for error messages.

    Attributes:
        shape: (N, D); arrays of more dimensions are flattened per row.
        dtype: dtype of the stored values.
    """

    ndim = 2

    def __init__(self, path: Path, origin: str):
        self.origin = origin
        with open_regular(path, origin) as f:
            size = file_size(f)
            shape, fortran, dtype, offset = read_npy_header(f, origin, size)
            rows = self._rows(shape, fortran)
            try:
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:
                raise DataError(f"{origin}: cannot map ({exc})") from None
        self._array = np.ndarray(rows, dtype=dtype, buffer=self._mm, offset=offset)
        self.shape = rows
        self.dtype = dtype
        self._group = max(1, RESIDENT_BYTES // (rows[1] * dtype.itemsize + FOLIO_BYTES))

    def _rows(self, shape, fortran) -> tuple[int, int]:
        """(N, D) of a stored array the map can serve; DataError if it cannot."""
        if fortran and len(shape) > 1:
            raise DataError(f"{self.origin}: memory mapping needs a C-order array "
                            "(this one is Fortran-order)")
        if len(shape) == 0:
            raise DataError(f"{self.origin}: holds a scalar, expected rows")
        return shape[0], math.prod(shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        """Copy of the rows selected by a slice or an index array, (B, D) in the stored
        dtype. Index arrays are gathered a group of rows at a time, releasing the map's
        pages after each group."""
        if isinstance(index, slice):
            out = np.array(self._array[index], copy=True)
            self.release()
            return out
        index = np.asarray(index)
        out = np.empty((len(index), self.shape[1]), self.dtype)
        for start in range(0, len(index), self._group):
            out[start:start + self._group] = self._array[index[start:start + self._group]]
            self.release()
        return out

    def release(self) -> None:
        """Drop this map's pages from the resident set (they stay in the page cache)."""
        if hasattr(mmap, "MADV_DONTNEED"):
            self._mm.madvise(mmap.MADV_DONTNEED)

