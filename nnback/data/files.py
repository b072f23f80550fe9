"""Readers for CSV, .npz and .npy files, each returning a Table.

Images and other multi-dimensional samples are flattened to one row each.
Files are opened with ``allow_pickle=False``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from nnback.data.mapped import MappedNpy
from nnback.data.table import Table, check_rows
from nnback.errors import DataError
from nnback.untrusted import load_npy, load_npz, open_regular, os_error, shown


def read_csv(path: Path, origin: str, target: str | None, features: list[str] | None,
             task: str = "auto", n_features: int | None = None) -> Table:
    """Read a CSV file with a header row.

    Args:
        path: file to read; origin: the path as the user wrote it.
        target: label/target column; None to read features only (prediction inputs).
        features: feature columns in order; None for all columns but the target.
        task: "classification" keeps labels as int (if all are integers) or str;
            "regression" parses numbers; "auto" picks classification for integer or
            non-numeric labels and regression for other numbers.
        n_features: the number of feature columns needed (a model's inputs), checked
            before any value is read.

    Returns:
        Table with X float64 (N, F), y (N,) int64/str or (N, 1) float64, and the line
        number of every row.
    """
    header, rows, lines = _read_rows(path, origin)
    cells = np.char.strip(np.array(rows, dtype=str))
    names = features if features is not None else [h for h in header if h != target]
    for name in names + ([target] if target is not None else []):
        if name not in header:
            raise DataError(f"{origin}: no column '{name}' (columns: {shown(header)})")
    if not names:
        raise DataError(f"{origin}: no feature columns besides '{target}'")
    if n_features is not None and len(names) != n_features:
        raise DataError(f"{origin}: {len(names)} feature columns ({shown(names)}), but the model was "
                        f"trained on {n_features}")
    lines = np.asarray(lines)
    X = np.column_stack([_numbers(cells[:, header.index(n)], origin, lines, n) for n in names])
    table = Table(X, None, origin, origin, "X", target or "", lines, names)
    if target is not None:
        table.y = _labels(cells[:, header.index(target)], origin, lines, target, task)
    return table


def _read_rows(path: Path, origin: str) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, data rows (blank lines skipped) and their line numbers.

    A UTF-8 byte-order mark is dropped. The first row must be a header: one of only
    numbers is refused (read as a header, it would silently lose a row of data), and
    so are two columns of the same name.
    """
    rows, lines = [], []
    try:
        with open_regular(path, origin) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, strict=True)
            try:
                header = next(reader, None)
                if header is None:
                    raise DataError(f"{origin}: empty file (expected a header row)")
                header = [h.strip() for h in header]
                _check_header(header, origin)
                for row in reader:
                    if not row:
                        continue
                    if len(row) != len(header):
                        raise DataError(f"{origin}: row {reader.line_num}: {_count(len(row), 'value')}, "
                                        f"but the header has {_count(len(header), 'column')}")
                    rows.append(row)
                    lines.append(reader.line_num)
            except csv.Error as exc:
                raise DataError(f"{origin}: row {reader.line_num}: {exc}") from None
    except UnicodeDecodeError:
        raise DataError(f"{origin}: not a UTF-8 text file") from None
    except OSError as exc:
        raise os_error(origin, exc) from None
    if not rows:
        raise DataError(f"{origin}: no data rows after the header")
    return header, rows, lines


def _check_header(header: list[str], origin: str) -> None:
    """Refuse a first row that is data rather than column names, names holding control
    characters (a quoted newline), and repeated names."""
    if all(_is_number(name) for name in header):
        raise DataError(f"{origin}: row 1 holds only numbers, but the first row must be a header "
                        f"naming the columns (e.g. {','.join(f'x{j}' for j in range(min(len(header), 3)))}"
                        f"{',...' if len(header) > 3 else ''}); add one")
    odd = [name for name in header if not name.isprintable()]
    if odd:
        raise DataError(f"{origin}: row 1: column name {odd[0]!r} holds a control character")
    seen, repeated = set(), []
    for name in header:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if repeated:
        raise DataError(f"{origin}: the header names column{'s' if len(repeated) > 1 else ''} "
                        f"{', '.join(repr(n) for n in repeated)} more than once")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _numbers(column: np.ndarray, origin: str, lines: np.ndarray, name: str) -> np.ndarray:
    """Parse a column of strings as float64; DataError names the first bad cell."""
    try:
        return column.astype(np.float64)
    except ValueError:
        for i, cell in enumerate(column):
            try:
                float(cell)
            except ValueError:
                what = "empty value" if cell == "" else f"{str(cell)!r} is not a number"
                raise DataError(f"{origin}: row {lines[i]}, column '{name}': {what}") from None
        return np.array([float(cell) for cell in column])


def _labels(column: np.ndarray, origin: str, lines: np.ndarray, name: str, task: str) -> np.ndarray:
    """Labels as int64 or str (N,) for classification, or float64 (N, 1) targets."""
    try:
        as_int = column.astype(np.int64)
    except (ValueError, OverflowError):
        as_int = None
    if task == "regression" or (task == "auto" and as_int is None and _all_numbers(column)):
        return _numbers(column, origin, lines, name)[:, None]
    if as_int is not None:
        return as_int
    empty = np.flatnonzero(column == "")
    if empty.size:
        raise DataError(f"{origin}: row {lines[empty[0]]}, column '{name}': empty label")
    return column


def _all_numbers(column: np.ndarray) -> bool:
    try:
        column.astype(np.float64)
    except ValueError:
        return False
    return True


def read_npz(path: Path, origin: str, x_key: str, y_key: str | None) -> Table:
    """Read arrays x_key (N, ...) and y_key (N,) or (N, T) from an .npz file.

    y_key None reads features only (prediction inputs).
    """
    arrays = load_npz(path, origin, [x_key] + ([y_key] if y_key is not None else []))
    return arrays_table(arrays[x_key], arrays.get(y_key), origin, origin, x_key, y_key or "")


def read_npy(path: Path, origin: str, mmap: bool = False):
    """One .npy array: an ndarray, or a MappedNpy of rows (N, D) if mmap."""
    return MappedNpy(path, origin) if mmap else load_npy(path, origin)


def arrays_table(X, y: np.ndarray | None, x_origin: str, y_origin: str,
                 x_name: str = "X", y_name: str = "y") -> Table:
    """Check shapes and dtypes of a feature array and its labels; flatten samples,
    noting the image shape of (N, H, W) and (N, C, H, W) arrays."""
    if X.ndim == 0:
        raise DataError(f"{x_origin}: {x_name} is a scalar, expected rows")
    if X.dtype.kind not in "biuf":
        raise DataError(f"{x_origin}: {x_name} holds {X.dtype} values; features must be numbers")
    if y is not None and y.ndim == 0:
        raise DataError(f"{y_origin}: {y_name} is a scalar, expected one label per row")
    if y is not None:
        check_rows(x_origin, x_name, len(X), y_origin, y_name, len(y))
    elif len(X) == 0:
        raise DataError(f"{x_origin}: {x_name} has no rows")
    sample_shape = {3: (1, *X.shape[1:]), 4: X.shape[1:]}.get(X.ndim)
    if isinstance(X, np.ndarray) and X.ndim != 2:
        X = X.reshape(len(X), -1)
    if X.shape[1] == 0:
        raise DataError(f"{x_origin}: {x_name} has no features (each row is empty)")
    return Table(X, y, x_origin, y_origin, x_name, y_name, sample_shape=sample_shape)
