"""Schema of the ``data:`` section of an experiment file.

``source`` picks the variant, and each variant accepts only its own keys:

- a built-in generator: ``spiral``, ``moons``, ``circles``, ``xor``, ``blobs``
  (classification) or ``sine``, ``linear`` (regression), with its parameters;
- a named data set: ``digits`` (shipped in the package), ``mnist`` or ``fashion-mnist``
  (fetched once with ``nnback data fetch``);
- a data file split by fractions: a ``.csv`` or ``.npz`` path, or a pair
  ``{x: ..., y: ...}`` of ``.npy`` files or IDX files (raw or gzip);
- without ``source``: explicit ``train:`` (and optional ``val:``/``test:``) files.

Relative paths are resolved against the ``base_dir`` given to ``load_data``.

Example::

    data:
      source: spiral
      classes: 3
      points_per_class: 100
      noise: 0.2
      split: {val: 0.2}
      preprocess: standardize

A pydantic error inside a variant carries the variant's tag after ``data`` in its
location, e.g. ``("data", "spiral", "noise")``; the tags are the keys of
``DATA_VARIANTS``.
"""

from __future__ import annotations

import difflib
from pathlib import PurePath
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

GENERATORS = ("spiral", "moons", "circles", "xor", "blobs", "sine", "linear")
DATASETS = ("digits", "mnist", "fashion-mnist")
BUILTIN_SOURCES = GENERATORS + DATASETS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitConfig(_Strict):
    """Fractions of the rows held out, drawn by a seeded shuffle."""

    val: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Fraction of the rows held out for validation "
                    "(stratified by class for classification).",
    )
    test: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Fraction of the rows held out for the final test "
                    "(stratified by class for classification).",
    )

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> SplitConfig:
        if self.val + self.test >= 1.0:
            raise ValueError(
                f"val + test must be less than 1 (got {self.val + self.test:g})")
        return self


class PreprocessConfig(_Strict):
    """Per-feature affine preprocessing, fitted on the training split only.

    Written either as a bare type (``preprocess: standardize``) or as a mapping
    (``preprocess: {type: scale, factor: 0.00392156862745098}``).
    """

    type: Literal["none", "standardize", "minmax", "scale"] = Field(
        "none",
        description="none: raw values; standardize: zero mean, unit variance; "
                    "minmax: each feature to [0, 1]; scale: multiply by factor.",
    )
    factor: float | None = Field(
        None, gt=0.0,
        description="Multiplier for type scale, e.g. 0.00392156862745098 (1/255) "
                    "for 8-bit pixels; not used by the other types.",
    )
    per_channel: bool = Field(
        False,
        description="standardize/minmax only: one statistic per image channel (over "
                    "all its pixels) instead of one per feature; needs an image shape.",
    )

    @model_validator(mode="after")
    def _factor_only_for_scale(self) -> PreprocessConfig:
        if self.type == "scale" and self.factor is None:
            raise ValueError("type scale needs a factor, e.g. {type: scale, factor: 0.00392156862745098}")
        if self.type != "scale" and self.factor is not None:
            raise ValueError(f"factor is only used by type scale (type is {self.type})")
        if self.per_channel and self.type not in ("standardize", "minmax"):
            raise ValueError(f"per_channel: only for standardize and minmax (type is {self.type})")
        return self


_Size = Annotated[int, Field(ge=1)]


class _DataBase(_Strict):
    split: SplitConfig = Field(
        default_factory=SplitConfig,
        description="Validation and test fractions carved out of the training rows.",
    )
    preprocess: PreprocessConfig = Field(
        default_factory=PreprocessConfig,
        description="Preprocessing fitted on the training split and saved with the model.",
    )
    seed: int | None = Field(
        None, ge=0,
        description="Seed for generating and splitting the data; default: the "
                    "experiment seed. Fix it to keep the data while varying the model seed.",
    )
    shape: tuple[_Size, _Size, _Size] | None = Field(
        None,
        description="Image shape [C, H, W] of each row's features (C * H * W of them, in "
                    "C order), e.g. [1, 8, 8]; image files (IDX, multi-dimensional arrays) carry theirs.",
    )

    @field_validator("preprocess", mode="before")
    @classmethod
    def _bare_type(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value


PointsPerClass = Annotated[int, Field(ge=1, description="Points generated for each class.")]
Samples = Annotated[int, Field(ge=1, description="Number of points generated.")]
Noise = Annotated[float, Field(ge=0.0, description="Standard deviation of the Gaussian noise.")]


class SpiralData(_DataBase):
    """The CS231n spiral: class j has r = linspace(0, 1, N), t = linspace(4j, 4(j+1), N)
    + noise * randn(N) and points (r sin t, r cos t)."""

    source: Literal["spiral"] = Field(description="Interleaved 2-D spiral arms, one per class.")
    classes: int = Field(3, ge=2, description="Number of spiral arms (classes).")
    points_per_class: PointsPerClass = 100
    noise: float = Field(0.2, ge=0.0, description="Standard deviation of the noise on the angle t.")


class MoonsData(_DataBase):
    """Two interleaving half circles in 2-D."""

    source: Literal["moons"] = Field(description="Two interleaving half moons (2 classes).")
    points_per_class: PointsPerClass = 100
    noise: Noise = 0.1


class CirclesData(_DataBase):
    """A small circle inside a large one in 2-D."""

    source: Literal["circles"] = Field(description="Two concentric circles (2 classes).")
    points_per_class: PointsPerClass = 100
    noise: Noise = 0.05
    inner_radius: float = Field(0.5, gt=0.0, lt=1.0,
                                description="Radius of the inner circle; the outer one has radius 1.")


class XorData(_DataBase):
    """Points in [-1, 1]^2 labelled 1 where the two coordinates differ in sign."""

    source: Literal["xor"] = Field(description="XOR of the coordinate signs (2 classes).")
    points_per_class: PointsPerClass = 100
    noise: Noise = 0.0


class BlobsData(_DataBase):
    """Isotropic Gaussian clusters with centres drawn uniformly in [-10, 10]^features."""

    source: Literal["blobs"] = Field(description="Gaussian clusters, one per class.")
    classes: int = Field(3, ge=2, description="Number of clusters (classes).")
    features: int = Field(2, ge=1, description="Dimension of each point.")
    points_per_class: PointsPerClass = 100
    spread: float = Field(1.0, gt=0.0, description="Standard deviation of each cluster.")


class SineData(_DataBase):
    """Regression: y = sin(x) + noise for x uniform in [-pi, pi]; X (N, 1), y (N, 1)."""

    source: Literal["sine"] = Field(description="Noisy sine wave (regression, 1 target).")
    samples: Samples = 200
    noise: Noise = 0.1


class LinearData(_DataBase):
    """Regression: y = X W + noise with X and W standard normal."""

    source: Literal["linear"] = Field(description="Random linear map (regression).")
    samples: Samples = 200
    features: int = Field(5, ge=1, description="Number of input features.")
    targets: int = Field(1, ge=1, description="Number of regression targets.")
    noise: Noise = 0.1


class DigitsData(_DataBase):
    """The 8x8 handwritten digits shipped in the package (1,797 images, 10 classes)."""

    source: Literal["digits"] = Field(description="Shipped 8x8 digits, pixels 0..16.")


class MnistData(_DataBase):
    """MNIST or Fashion-MNIST from IDX files fetched by ``nnback data fetch``.

    The official test set is the test split; ``split.val`` carves validation rows out
    of the training set.
    """

    source: Literal["mnist", "fashion-mnist"] = Field(description="Which data set to read.")
    dir: str | None = Field(
        None, description="Folder holding the four IDX files; default data/<source>.")

    @model_validator(mode="after")
    def _own_test_set(self) -> MnistData:
        if self.split.test > 0:
            raise ValueError(f"split.test: {self.source} has its own test set; remove split.test")
        return self


class FilePair(_Strict):
    """Features and labels in two files: .npy arrays or IDX files (raw or gzip)."""

    x: str = Field(description="File of the features, (N, ...) (images are flattened).")
    y: str = Field(description="File of the labels (N,) or regression targets (N, T).")


FileRef = str | FilePair


def file_format(ref: FileRef, declared: str = "auto") -> str:
    """The format of a file reference: ``csv``, ``npz``, ``npy`` or ``idx``.

    Raises:
        ValueError: the extension or the declared format does not fit the reference.
    """
    if isinstance(ref, FilePair):
        fmt = declared if declared != "auto" else (
            "npy" if all(PurePath(p).suffix == ".npy" for p in (ref.x, ref.y)) else "idx")
        if fmt not in ("npy", "idx"):
            raise ValueError(f"an {{x, y}} pair holds .npy or IDX files, not {fmt}")
        return fmt
    suffix = PurePath(ref).suffix.lower()
    fmt = declared if declared != "auto" else suffix.lstrip(".")
    if fmt in ("npy", "idx"):
        raise ValueError(f"{ref!r}: {fmt} files hold one array; give a pair {{x: ..., y: ...}}")
    if fmt not in ("csv", "npz"):
        hint = difflib.get_close_matches(ref, BUILTIN_SOURCES, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(
            f"{ref!r} is neither a built-in data set{suggestion} nor a .csv or .npz file; "
            f"built-in: {', '.join(BUILTIN_SOURCES)}")
    return fmt


class _FileOptions(_DataBase):
    format: Literal["auto", "csv", "npz", "npy", "idx"] = Field(
        "auto", description="File format; auto: from the extension (.csv, .npz, "
                            "a pair of .npy files, otherwise a pair of IDX files).")
    task: Literal["auto", "classification", "regression"] = Field(
        "auto", description="auto: integer or string labels mean classification, "
                            "floating-point targets mean regression.")
    target: str | None = Field(
        None, description="CSV only, required there: name of the label/target column.")
    features: list[str] | None = Field(
        None, min_length=1,
        description="CSV only: feature columns to use, in order; default all but the target.")
    x_key: str = Field("X", description="npz only: name of the feature array.")
    y_key: str = Field("y", description="npz only: name of the label array.")
    mmap: bool = Field(
        False, description="Memory-map .npy feature files instead of reading them: "
                           "batches are read from disk and preprocessed on the fly.")

    @field_validator("features")
    @classmethod
    def _distinct_features(cls, names: list[str] | None) -> list[str] | None:
        repeated = next((name for i, name in enumerate(names or []) if name in names[:i]), None)
        if repeated is not None:
            raise ValueError(f"column {repeated!r} is listed twice")
        return names

    @field_validator("source", "train", "val", "test", check_fields=False)
    @classmethod
    def _known_format(cls, ref: FileRef | None, info: ValidationInfo) -> FileRef | None:
        if ref is not None:
            file_format(ref, info.data.get("format", "auto"))
        return ref

    @model_validator(mode="after")
    def _options_fit_format(self) -> _FileOptions:
        refs = [getattr(self, key, None) for key in ("source", "train", "val", "test")]
        formats = {file_format(ref, self.format) for ref in refs if ref is not None}
        if len(formats) > 1:
            raise ValueError(f"all files must have one format (got {', '.join(sorted(formats))})")
        fmt = formats.pop()
        if fmt == "csv" and self.target is None:
            raise ValueError("target: name the label column of the CSV file")
        used = {"target": "csv", "features": "csv", "x_key": "npz", "y_key": "npz", "mmap": "npy"}
        for key, needs in used.items():
            value = getattr(self, key)
            if fmt != needs and value and value != type(self).model_fields[key].default:
                raise ValueError(f"{key}: only used with {needs} files (these are {fmt})")
        return self


class FileData(_FileOptions):
    """One data file (or pair), split into train/val/test by ``split``."""

    source: FileRef = Field(description="A .csv or .npz path, or a pair {x: ..., y: ...}.")


class FilesData(_FileOptions):
    """Explicit train/val/test files; ``split`` may carve val/test out of train only
    where the file is not given."""

    train: FileRef = Field(description="Training file (or {x, y} pair).")
    val: FileRef | None = Field(None, description="Validation file (or {x, y} pair).")
    test: FileRef | None = Field(None, description="Test file (or {x, y} pair).")

    @model_validator(mode="after")
    def _split_or_file(self) -> FilesData:
        for name in ("val", "test"):
            if getattr(self, name) is not None and getattr(self.split, name) > 0:
                raise ValueError(f"split.{name}: a {name} file is given; remove one of them")
        return self


DATA_VARIANTS = {
    "spiral": SpiralData, "moons": MoonsData, "circles": CirclesData, "xor": XorData,
    "blobs": BlobsData, "sine": SineData, "linear": LinearData, "digits": DigitsData,
    "mnist": MnistData, "file": FileData, "files": FilesData,
}


def _variant(value: Any) -> str:
    """The DATA_VARIANTS tag of a raw mapping or a built model."""
    get = value.get if isinstance(value, dict) else lambda key: getattr(value, key, None)
    source = get("source")
    if isinstance(source, str) and source in BUILTIN_SOURCES:
        return "mnist" if source == "fashion-mnist" else source
    if source is None and get("train") is not None:
        return "files"
    return "file"


DataConfig = Annotated[
    # a union built from a tuple has no `|` spelling
    Union[tuple(Annotated[model, Tag(tag)] for tag, model in DATA_VARIANTS.items())],  # noqa: UP007
    Discriminator(_variant),
]
"""The ``data:`` section: one of the DATA_VARIANTS models, chosen by ``source``."""
