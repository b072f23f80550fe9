"""Class labels and regression targets: task detection, encoding, decoding.

Classes are the sorted distinct labels of the training data (numbers in numeric
order, strings in code-point order); a class index is a position in that list. Saved
class lists are used as they are, in their saved order.
"""

from __future__ import annotations

import numpy as np

from nnback.data.table import Table, describe, usable
from nnback.errors import DataError


def infer_task(y: np.ndarray) -> str:
    """"classification" for integer, boolean or string labels, else "regression"."""
    return "classification" if y.dtype.kind in "biuUS" else "regression"


def integer_labels(table: Table) -> np.ndarray:
    """The labels of a classification table as int64 or str, (N,).

    Float labels must hold whole numbers; 2-D labels must have one column.
    """
    y = table.y
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{table.y_origin}: {table.y_name} has shape {y.shape}; "
                        "class labels need one per row")
    if y.dtype.kind in "US":
        return y.astype(str)
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            i = int(bad[0])
            what = describe(y[i]) if not np.isfinite(y[i]) else repr(float(y[i]))
            raise DataError(f"{table.where_y(i)}: label {what} is not an integer class label")
    return y.astype(np.int64)


def classes_of(labels: np.ndarray) -> list:
    """Sorted distinct labels as Python ints or strs."""
    return np.unique(labels).tolist()


def encode(table: Table, labels: np.ndarray, classes: list) -> np.ndarray:
    """Class indices (N,) int64 of labels; DataError names the first unknown label."""
    known = np.asarray(classes)
    if known.dtype.kind != labels.dtype.kind:
        known, labels = known.astype(str), labels.astype(str)
    order = np.argsort(known, kind="stable")
    index = order[np.clip(np.searchsorted(known[order], labels), 0, len(known) - 1)]
    unknown = np.flatnonzero(known[index] != labels)
    if unknown.size:
        i = int(unknown[0])
        shown = ", ".join(map(str, classes[:10])) + (", ..." if len(classes) > 10 else "")
        raise DataError(f"{table.where_y(i)}: label {labels[i].item()!r} is not one of the "
                        f"classes seen in training ({shown})")
    return index.astype(np.int64)


def regression_targets(table: Table) -> np.ndarray:
    """Targets as float32 (N, T); DataError names the first NaN or inf."""
    y = table.y
    if y.dtype.kind not in "biuf":
        raise DataError(f"{table.y_origin}: {table.y_name} holds {y.dtype} values; "
                        "regression needs numbers")
    y = y.reshape(len(y), -1)
    bad = np.argwhere(~usable(y))
    if bad.size:
        i, j = (int(v) for v in bad[0])
        where = table.where_y(i) + (f" (target {j})" if y.shape[1] > 1 else "")
        raise DataError(f"{where}: value is {describe(y[i, j])}")
    return y.astype(np.float32)


def labels_from_indices(indices: np.ndarray, classes: list) -> np.ndarray:
    """The class names or values of class indices (N,): int64 or str array (N,)."""
    return np.asarray(classes)[np.asarray(indices, dtype=np.int64)]
