"""Rows as read from one source, with the words that locate a bad value in it.

Locations in messages:
- CSV files: ``data/train.csv: row 17, column 'x2'``, where rows are the file's line
  numbers as an editor or spreadsheet shows them (the header is row 1);
- arrays (.npy, .npz, IDX): ``data/train.npz: X[16, 1]``, 0-based numpy indices of the
  array after images are flattened to rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnback.errors import DataError

CHUNK_BYTES = 1 << 22
# A numpy float64, so comparing float16 values with it promotes them instead of overflowing.
FLOAT32_MAX = np.float64(np.finfo(np.float32).max)


@dataclass
class Table:
    """Features and labels of one file or generator, before encoding and preprocessing.

    Attributes:
        X: (N, D) features, any numeric dtype; an ndarray or a MappedNpy.
        y: (N,) labels (int, str or float) or (N, T) float targets; None for inputs
            read for prediction.
        x_origin: file (as written by the user) or generator named in messages about X.
        y_origin: the same for y.
        x_name: name of the feature array in messages ("X", or the npz key).
        y_name: name of the label array or CSV target column.
        lines: (N,) CSV line number of each row (header is line 1); None for arrays.
        feature_names: CSV feature columns, in order; None for arrays.
        sample_shape: (C, H, W) of the images an array held before its rows were
            flattened ((1, H, W) for greyscale (N, H, W) arrays); None otherwise.
    """

    X: object
    y: np.ndarray | None
    x_origin: str
    y_origin: str
    x_name: str = "X"
    y_name: str = "y"
    lines: np.ndarray | None = None
    feature_names: list[str] | None = None
    sample_shape: tuple | None = None

    def __len__(self) -> int:
        return len(self.X)

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def where_x(self, i: int, j: int) -> str:
        """Location of feature j of row i, e.g. "a.csv: row 17, column 'x2'"."""
        if self.lines is not None:
            return f"{self.x_origin}: row {self.lines[i]}, column '{self.feature_names[j]}'"
        return f"{self.x_origin}: {self.x_name}[{i}, {j}]"

    def where_y(self, i: int) -> str:
        """Location of the label of row i, e.g. "a.npz: y[16]"."""
        if self.lines is not None:
            return f"{self.y_origin}: row {self.lines[i]}, column '{self.y_name}'"
        return f"{self.y_origin}: {self.y_name}[{i}]"

    def check_finite(self) -> None:
        """Raise DataError naming the first NaN, inf or value beyond the float32 range
        (which would become inf in training) in X; reads X in bounded chunks."""
        if self.X.dtype.kind not in "fc":
            return
        for part in chunk_slices(len(self.X), self.n_features * self.X.dtype.itemsize):
            block = self.X[part]
            bad = np.flatnonzero(~usable(block).all(axis=1))
            if bad.size:
                i = int(bad[0])
                j = int(np.flatnonzero(~usable(block[i]))[0])
                raise DataError(f"{self.where_x(part.start + i, j)}: value is {describe(block[i, j])}")


def usable(values: np.ndarray) -> np.ndarray:
    """Mask of the values that are finite and within the float32 range."""
    return np.abs(values) <= FLOAT32_MAX


def describe(value) -> str:
    """'NaN', 'inf', '-inf', or a finite value beyond the float32 range, in words."""
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{float(value):g}, beyond the float32 range (±{FLOAT32_MAX:.4g})"


def check_rows(origin: str, name: str, n: int, y_origin: str, y_name: str, n_y: int) -> None:
    """Raise DataError unless X has rows and as many rows as y."""
    if n == 0:
        raise DataError(f"{origin}: {name} has no rows")
    if n != n_y:
        raise DataError(f"{origin}: {name} has {n} rows but {y_origin}: {y_name} has {n_y}")


def chunk_slices(n_rows: int, row_nbytes: int) -> list[slice]:
    """Consecutive slices covering range(n_rows), each at most CHUNK_BYTES of rows."""
    step = max(1, CHUNK_BYTES // max(1, row_nbytes))
    return [slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


def read_rows(X, rows: np.ndarray | None, part: slice) -> np.ndarray:
    """Rows ``rows[part]`` of X (all rows if rows is None), for an ndarray or MappedNpy."""
    return X[part] if rows is None else X[rows[part]]
