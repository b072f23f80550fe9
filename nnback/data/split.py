"""Seeded train/validation/test splits, stratified by class for classification.

The same rows, fractions and generator state always give the same split. Within each
class (or over all rows for regression) the rows are shuffled and the first
round(test * n) go to test, the next round(val * n) to validation, the rest to training.
Every returned index array is sorted, so splits keep the file order.
"""

from __future__ import annotations

import numpy as np

from nnback.errors import DataError


def split_rows(n_rows: int, val: float, test: float, rng: np.random.Generator,
               y: np.ndarray | None = None, classes: list | None = None):
    """Partition range(n_rows) into (train, val, test) sorted int64 index arrays.

    Args:
        val, test: fractions held out, val + test < 1.
        rng: the split's random generator.
        y: (n_rows,) class indices to stratify by; None for a plain shuffle.
        classes: class names, for error messages.

    Raises:
        DataError: a requested split would be empty, or a class would have no training row.
    """
    if y is None:
        groups = [rng.permutation(n_rows)]
    else:
        groups = [rng.permutation(np.flatnonzero(y == c)) for c in range(len(classes))]
    parts = {"train": [], "val": [], "test": []}
    for c, rows in enumerate(groups):
        n_test, n_val = _round(test * len(rows)), _round(val * len(rows))
        if y is not None and n_test + n_val >= len(rows) > 0:
            raise DataError(
                f"data.split: holding out val {val:g} and test {test:g} leaves class "
                f"{classes[c]!r} ({len(rows)} rows) with no training row")
        parts["test"].append(rows[:n_test])
        parts["val"].append(rows[n_test:n_test + n_val])
        parts["train"].append(rows[n_test + n_val:])
    out = {name: np.sort(np.concatenate(chunks)).astype(np.int64) for name, chunks in parts.items()}
    for name, fraction in (("val", val), ("test", test)):
        if fraction > 0 and out[name].size == 0:
            raise DataError(f"data.split.{name}: {fraction:g} of {n_rows} rows leaves "
                            f"the {name} split empty")
    if out["train"].size == 0:
        raise DataError(f"data.split: val {val:g} and test {test:g} of {n_rows} rows "
                        "leave no training row")
    return out["train"], out["val"], out["test"]


def _round(x: float) -> int:
    """Round half up (not to even), so the split sizes are easy to predict."""
    return int(np.floor(x + 0.5))
