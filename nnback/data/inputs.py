"""Data for saved models: raw prediction inputs and labelled evaluation files, read
with the saved preprocessing and classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnback.config.data_schema import FileData
from nnback.data.files import arrays_table, read_csv, read_npy, read_npz
from nnback.data.idx import read_idx
from nnback.data.labels import encode, integer_labels, regression_targets
from nnback.data.load import DataMeta, Split, make_split, read_file
from nnback.data.preprocess import Preprocessor
from nnback.data.table import Table
from nnback.errors import DataError


def read_inputs(path: Path, meta: DataMeta, preprocessor: Preprocessor) -> np.ndarray:
    """Read raw inputs (as ``read_raw_inputs``) and preprocess them as in training.

    Returns:
        float32 (N, D) ready for the model.

    Raises:
        DataError: as ``read_raw_inputs``, or a value the preprocessing takes out of the
            float32 range.
    """
    table = _input_table(Path(path), meta)
    with np.errstate(over="ignore", invalid="ignore"):  # reported below, with the place
        X = preprocessor.transform(table.X)
    bad = np.argwhere(~np.isfinite(X))
    if bad.size:
        i, j = (int(v) for v in bad[0])
        raise DataError(f"{table.where_x(i, j)}: value {float(table.X[i, j]):g} leaves the float32 "
                        "range after the saved preprocessing")
    return X


def read_raw_inputs(path: Path, meta: DataMeta) -> np.ndarray:
    """Read raw inputs, checked against the saved data description.

    Args:
        path: a .csv file (header row; the training feature columns are picked by
            name, other columns such as the target are ignored), a .npy array, a .npz
            file (array ``meta.x_key``) or an IDX file (raw or gzip). Images are flattened.
        meta: the saved data description.

    Returns:
        (N, D) raw values as read (any numeric dtype).

    Raises:
        DataError: unreadable file, NaN/inf values, or a feature count that differs
            from training.
    """
    return _input_table(Path(path), meta).X


def _input_table(path: Path, meta: DataMeta) -> Table:
    """The Table of a raw input file (see ``read_raw_inputs``), its features checked."""
    origin = str(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table = read_csv(path, origin, None, meta.feature_names, n_features=meta.n_features)
    elif suffix == ".npz":
        table = read_npz(path, origin, meta.x_key, None)
    else:
        X = read_npy(path, origin) if suffix == ".npy" else read_idx(path, origin)
        table = arrays_table(X, None, origin, origin)
    _check_features(table, meta)
    return table


def read_labelled(cfg: FileData, base_dir: Path, meta: DataMeta, preprocessor: Preprocessor) -> Split:
    """A labelled file read as in training, for evaluating saved weights on it.

    Args:
        cfg: file options (format, target, keys, mmap); its split and preprocess
            are ignored: the saved ones apply.
        base_dir: folder relative paths are resolved against.
        meta, preprocessor: saved with the model.

    Returns:
        A Split whose labels are indices into ``meta.classes`` (or float32 targets).

    Raises:
        DataError: unreadable file, NaN/inf, a label not among the saved classes, or
            a feature or target count that differs from training.
    """
    table = read_file(cfg.source, cfg, Path(base_dir))
    _check_features(table, meta)
    if meta.task == "classification":
        y = encode(table, integer_labels(table), meta.classes)
    else:
        y = regression_targets(table)
        if y.shape[1] != meta.n_outputs:
            raise DataError(f"{table.y_origin}: {y.shape[1]} targets per row, but the model "
                            f"was trained on {meta.n_outputs}")
    return make_split(table, y, None, preprocessor)


def _check_features(table: Table, meta: DataMeta) -> None:
    """Reject a feature count that differs from training, then NaN or inf values."""
    if table.n_features != meta.n_features:
        raise DataError(f"{table.x_origin}: {table.n_features} features per row, but the model "
                        f"was trained on {meta.n_features}")
    table.check_finite()
