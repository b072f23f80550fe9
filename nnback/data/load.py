"""From the ``data:`` config to ready splits: ``load_data``, ``DataBundle``, ``Split``.

Order of work: read the sources, reject non-finite features, encode labels against the
training classes, carve validation/test rows out of the training rows (seeded,
stratified), fit the preprocessing on the training rows only, then preprocess in-memory
splits once to float32; memory-mapped splits are preprocessed batch by batch.

Random streams: generators draw from ``default_rng([seed, 0])``, the split from
``default_rng([seed, 1])``, so the same config and seed give the same data and split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nnback.config.data_schema import (
    DataConfig,
    DigitsData,
    FileData,
    FilePair,
    FileRef,
    FilesData,
    MnistData,
    file_format,
)
from nnback.data.builtin import FASHION_CLASSES, load_digits, load_mnist
from nnback.data.files import arrays_table, read_csv, read_npy, read_npz
from nnback.data.generators import GENERATORS, REGRESSION
from nnback.data.idx import read_idx
from nnback.data.labels import classes_of, encode, infer_task, integer_labels, regression_targets
from nnback.data.mapped import MappedNpy
from nnback.data.preprocess import Preprocessor
from nnback.data.split import split_rows
from nnback.data.table import Table
from nnback.errors import DataError
from nnback.untrusted import is_int, os_error

PART_NAMES = ("train", "val", "test")


class Split:
    """The rows of one split (train, val or test), read in batches with ``take``.

    Args:
        X: in memory: (N, D) float32 rows, already preprocessed. Memory-mapped: the
            raw map (M, D) (a MappedNpy, possibly shared with other splits).
        y: (N,) int64 class indices, or (N, T) float32 regression targets.
        rows: memory-mapped only: (N,) int64 rows of X that belong to this split.
        preprocessor: memory-mapped only: applied to every gathered batch.
    """

    def __init__(self, X, y: np.ndarray, rows: np.ndarray | None = None,
                 preprocessor: Preprocessor | None = None):
        self.X = X
        self.y = y
        self.rows = rows
        self.preprocessor = preprocessor

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        kind = "memory-mapped" if self.lazy else "in memory"
        return f"Split({len(self)} rows, {self.n_features} features, {kind})"

    @property
    def lazy(self) -> bool:
        """True when rows are read from a memory map and preprocessed per batch."""
        return self.preprocessor is not None

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def take(self, idx: np.ndarray, out_X: np.ndarray | None = None, in_range: bool = False):
        """Gather a batch.

        Args:
            idx: (B,) int row positions in this split, 0 <= idx < len(self).
            out_X: optional float32 (B_max, D) buffer, B_max >= B, reused across
                batches; its first B rows receive the batch.
            in_range: the caller guarantees ``0 <= idx < len(self)`` (a slice of a
                permutation of the rows), so the range check is skipped.

        Returns:
            Xb: float32 (B, D) preprocessed rows (a view of out_X when given).
            yb: (B,) int64 or (B, T) float32.
        """
        idx = np.asarray(idx, dtype=np.int64)
        if not in_range and idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"batch index out of range for a split of {len(self)} rows")
        out = None if out_X is None else out_X[:len(idx)]
        if self.lazy:
            Xb = self.preprocessor.transform(self.X[self.rows[idx]], out=out)
        else:
            Xb = np.take(self.X, idx, axis=0, out=out, mode="clip")
        return Xb, self.y[idx]

    def take_batches(self, order: np.ndarray, batch_size: int, out_X: np.ndarray):
        """Yield the batches of rows ``order[:B]``, ``order[B:2B]``, ... (B = ``batch_size``),
        gathered a bufferful at a time: one ``take`` per ``len(out_X) // B`` batches.

        Args:
            order: (M,) int row positions, each in ``[0, len(self))`` (a slice of a
                permutation of the rows).
            batch_size: B, rows per batch (the last batch may have fewer).
            out_X: float32 (R, D) buffer, reused; R >= B, or R >= M when M < B.

        Yields:
            (Xb, yb) as ``take`` returns them; Xb is a view of out_X, overwritten when
            the next bufferful is gathered.
        """
        per_take = max(len(out_X) // batch_size, 1) * batch_size
        for start in range(0, len(order), per_take):
            X, y = self.take(order[start:start + per_take], out_X=out_X, in_range=True)
            for first in range(0, len(X), batch_size):
                yield X[first:first + batch_size], y[first:first + batch_size]

    def batches(self, batch_size: int):
        """Yield (Xb, yb) over the split in order, for evaluation."""
        for start in range(0, len(self), batch_size):
            yield self.take(np.arange(start, min(start + batch_size, len(self))))


@dataclass
class DataMeta:
    """What a saved model needs to read inputs and name its outputs (JSON-ready).

    Attributes:
        task: "classification" or "regression".
        classes: class names or values in index order (str or int); None for regression.
        n_features: D, inputs per row after flattening.
        n_outputs: number of classes, or of regression targets.
        feature_names: CSV feature columns (prediction CSVs are read by these names).
        x_key: npz array holding the features.
        shape: [C, H, W] of the images each row holds (from ``data.shape`` or the
            files), or None for plain feature rows.
    """

    task: str
    classes: list | None
    n_features: int
    n_outputs: int
    feature_names: list[str] | None = None
    x_key: str = "X"
    shape: list[int] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DataMeta:
        """Rebuild a saved description, checking every field (the file may be hand-edited).

        Raises:
            DataError: a missing, unknown or ill-typed field, or counts that disagree.
        """
        try:
            meta = cls(**data)
        except TypeError as exc:
            raise DataError(f"saved data description is invalid ({exc})") from None
        problem = meta._problem()
        if problem:
            raise DataError(f"saved data description is invalid: {problem}")
        return meta

    def _problem(self) -> str | None:
        """What is wrong with the fields, or None."""
        if self.task not in ("classification", "regression"):
            return f"task {self.task!r}"
        if not (_is_count(self.n_features) and _is_count(self.n_outputs)):
            return f"n_features {self.n_features!r}, n_outputs {self.n_outputs!r}"
        if self.task == "classification" and not (
                _is_list_of(self.classes, (str, int)) and len(self.classes) == self.n_outputs
                and len(set(self.classes)) == len(self.classes)):
            return f"classes {str(self.classes)[:80]} for {self.n_outputs} outputs"
        if self.task == "regression" and self.classes is not None:
            return "classes given for regression"
        if self.feature_names is not None and not (_is_list_of(self.feature_names, str)
                                                   and len(self.feature_names) == self.n_features):
            return f"feature_names {str(self.feature_names)[:80]} for {self.n_features} features"
        if not isinstance(self.x_key, str):
            return f"x_key {self.x_key!r}"
        return None


def _is_count(value) -> bool:
    return is_int(value) and value > 0


def _is_list_of(value, kinds: tuple) -> bool:
    """A list of values of ``kinds`` (bools excluded)."""
    return isinstance(value, list) and all(isinstance(v, kinds) and not isinstance(v, bool) for v in value)


@dataclass
class DataBundle:
    """Everything the trainer needs from the data.

    Attributes:
        train, val, test: the splits; val and test are None when not requested.
        meta: task, classes, feature and output counts (save ``meta.to_dict()`` as JSON).
        preprocessor: fitted on the training rows (save ``preprocessor.state_dict()``).
    """

    train: Split
    val: Split | None
    test: Split | None
    meta: DataMeta
    preprocessor: Preprocessor

    @property
    def task(self) -> str:
        return self.meta.task

    @property
    def classes(self) -> list | None:
        return self.meta.classes

    @property
    def n_features(self) -> int:
        return self.meta.n_features

    @property
    def n_outputs(self) -> int:
        return self.meta.n_outputs

    @property
    def shape(self) -> list[int] | None:
        return self.meta.shape


def load_data(cfg: DataConfig, seed: int, base_dir: Path) -> DataBundle:
    """Read, check, split and preprocess the data described by ``cfg``.

    Args:
        cfg: the validated ``data:`` section.
        seed: the experiment seed (``cfg.seed`` wins when set).
        base_dir: folder that relative paths in cfg are resolved against.

    Raises:
        DataError: missing or unreadable files, invalid values, bad splits.
    """
    seed = cfg.seed if cfg.seed is not None else seed
    tables = _read_tables(cfg, seed, Path(base_dir))
    train = tables["train"]
    for table in tables.values():
        if table is not None:
            _check_like_train(table, train)
            table.check_finite()
    task = _task(cfg, train)
    targets, classes = (_encode_classes if task == "classification" else _encode_targets)(tables)

    carve = {name: getattr(cfg.split, name) if tables[name] is None else 0.0 for name in ("val", "test")}
    rows = {name: None for name in PART_NAMES}
    if carve["val"] > 0 or carve["test"] > 0:
        stratify = targets["train"] if task == "classification" else None
        parts = split_rows(len(train), carve["val"], carve["test"], np.random.default_rng([seed, 1]),
                           stratify, classes)
        split = dict(zip(PART_NAMES, parts, strict=True))
        rows["train"] = split["train"]
        for name in ("val", "test"):
            if carve[name] > 0:
                rows[name], tables[name], targets[name] = split[name], train, targets["train"]

    shape = image_shape(cfg, train)
    if cfg.preprocess.per_channel and shape is None:
        raise DataError("data.preprocess.per_channel: needs images: give data.shape: [C, H, W]")
    channels = shape[0] if cfg.preprocess.per_channel else None
    prep = Preprocessor(cfg.preprocess.type, cfg.preprocess.factor, channels).fit(train.X, rows["train"])
    splits = {name: make_split(tables[name], targets[name], rows[name], prep)
              if tables[name] is not None else None for name in PART_NAMES}
    if isinstance(cfg, MnistData) and cfg.source == "fashion-mnist":
        classes = [FASHION_CLASSES[c] for c in classes]
    n_outputs = len(classes) if classes is not None else targets["train"].shape[1]
    meta = DataMeta(task, classes, train.n_features, n_outputs, train.feature_names,
                    getattr(cfg, "x_key", "X"), shape)
    return DataBundle(splits["train"], splits["val"], splits["test"], meta, prep)


def image_shape(cfg, train: Table) -> list[int] | None:
    """[C, H, W] of the training rows: ``data.shape``, else the shape the files carry.

    Raises:
        DataError: ``data.shape`` does not hold as many values as a row has features.
    """
    if cfg.shape is None:
        return None if train.sample_shape is None else list(train.sample_shape)
    size = cfg.shape[0] * cfg.shape[1] * cfg.shape[2]
    if size != train.n_features:
        raise DataError(f"data.shape: {list(cfg.shape)} is {size} values per row, but the data "
                        f"has {train.n_features} features per row")
    return list(cfg.shape)


def _read_tables(cfg, seed: int, base_dir: Path) -> dict[str, Table | None]:
    """The tables of the config, keyed train/val/test (val, test may be None)."""
    tables = dict.fromkeys(PART_NAMES)
    if _generator(cfg) is not None:
        params = cfg.model_dump(exclude={"source", "split", "preprocess", "seed", "shape"})
        X, y = GENERATORS[cfg.source](**params, rng=np.random.default_rng([seed, 0]))
        tables["train"] = arrays_table(X, y, cfg.source, cfg.source)
    elif isinstance(cfg, DigitsData):
        tables["train"] = load_digits()
    elif isinstance(cfg, MnistData):
        folder = cfg.dir or f"data/{cfg.source}"
        tables["train"], tables["test"] = load_mnist(cfg.source, base_dir / folder, folder)
    elif isinstance(cfg, FileData):
        tables["train"] = read_file(cfg.source, cfg, base_dir)
    elif isinstance(cfg, FilesData):
        for name in PART_NAMES:
            ref = getattr(cfg, name)
            tables[name] = read_file(ref, cfg, base_dir) if ref is not None else None
    return tables


def read_file(ref: FileRef, cfg: FileData | FilesData, base_dir: Path) -> Table:
    """Read one file reference of a file-based config, paths relative to base_dir."""
    fmt = file_format(ref, cfg.format)
    if fmt == "csv":
        return read_csv(_path(base_dir, ref), ref, cfg.target, cfg.features, cfg.task)
    if fmt == "npz":
        return read_npz(_path(base_dir, ref), ref, cfg.x_key, cfg.y_key)
    assert isinstance(ref, FilePair)
    x_path, y_path = _path(base_dir, ref.x), _path(base_dir, ref.y)
    if fmt == "npy":
        X, y = read_npy(x_path, ref.x, mmap=cfg.mmap), read_npy(y_path, ref.y)
    else:
        X, y = read_idx(x_path, ref.x), read_idx(y_path, ref.y)
    return arrays_table(X, y, ref.x, ref.y)


def _path(base_dir: Path, ref: str) -> Path:
    """``ref`` resolved against base_dir; a missing relative path names the folder tried."""
    try:
        path = Path(ref).expanduser()
    except RuntimeError:  # ~user of a user this machine does not have
        raise DataError(f"{ref}: no home folder for {ref.split('/')[0]} on this machine") from None
    try:
        missing = not path.is_absolute() and not (base_dir / path).exists()
    except OSError as exc:  # a name too long for the file system
        raise os_error(ref, exc) from None
    if missing:
        raise DataError(f"{ref}: file not found in {base_dir.resolve()} "
                        f"(relative data paths start from there)")
    return base_dir / path


def _check_like_train(table: Table, train: Table) -> None:
    """Every file must have the training data's features."""
    if table.n_features != train.n_features:
        raise DataError(f"{table.x_origin}: {table.n_features} features per row, but the "
                        f"training data ({train.x_origin}) has {train.n_features}")
    if table.feature_names != train.feature_names:
        raise DataError(f"{table.x_origin}: feature columns {table.feature_names} differ from "
                        f"the training data's {train.feature_names}")


def _task(cfg, train: Table) -> str:
    declared = getattr(cfg, "task", "auto")
    if declared != "auto":
        return declared
    return "regression" if _generator(cfg) in REGRESSION else infer_task(train.y)


def _generator(cfg) -> str | None:
    """The generator name of a generator config, else None."""
    source = getattr(cfg, "source", None)
    return source if isinstance(source, str) and source in GENERATORS else None


def _encode_classes(tables: dict[str, Table | None]):
    """Class indices (N,) int64 per table, and the classes of the training labels."""
    labels = {name: integer_labels(t) for name, t in tables.items() if t is not None}
    classes = classes_of(labels["train"])
    if len(classes) < 2:
        raise DataError(f"{tables['train'].y_origin}: the training labels hold one class "
                        f"({classes[0]!r}); classification needs at least two")
    targets = dict.fromkeys(PART_NAMES)
    targets.update({name: encode(tables[name], lab, classes) for name, lab in labels.items()})
    return targets, classes


def _encode_targets(tables: dict[str, Table | None]):
    """Regression targets (N, T) float32 per table; no classes."""
    targets = dict.fromkeys(PART_NAMES)
    targets.update({name: regression_targets(t) for name, t in tables.items() if t is not None})
    width = targets["train"].shape[1]
    for name, y in targets.items():
        if y is not None and y.shape[1] != width:
            raise DataError(f"{tables[name].y_origin}: {y.shape[1]} targets per row, but the "
                            f"training data has {width}")
    return targets, None


def make_split(table: Table, y: np.ndarray, rows: np.ndarray | None, prep: Preprocessor) -> Split:
    """A Split of rows ``rows`` of table (all if None) with their encoded labels y,
    preprocessed by prep (now if in memory, per batch if memory-mapped)."""
    if isinstance(table.X, MappedNpy):
        rows = np.arange(len(table), dtype=np.int64) if rows is None else rows
        return Split(table.X, y[rows], rows, prep)
    X = table.X if rows is None else table.X[rows]
    return Split(prep.transform(X), y if rows is None else y[rows])
