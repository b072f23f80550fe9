"""Schema of the data: section: variants, defaults, and the errors of bad sections."""

import pytest
from pydantic import TypeAdapter, ValidationError

from nnback.config.data_schema import (
    DATA_VARIANTS,
    BlobsData,
    DataConfig,
    FileData,
    FilePair,
    FilesData,
    MnistData,
    SpiralData,
    file_format,
)

CONFIG = TypeAdapter(DataConfig)


def errors(section):
    with pytest.raises(ValidationError) as info:
        CONFIG.validate_python(section)
    return [(err["loc"], err["msg"]) for err in info.value.errors()]


def test_issue_example_shape():
    cfg = CONFIG.validate_python({"source": "digits", "split": {"val": 0.15, "test": 0.15},
                                  "preprocess": "standardize"})
    assert type(cfg).__name__ == "DigitsData"
    assert (cfg.split.val, cfg.split.test) == (0.15, 0.15)
    assert cfg.preprocess.type == "standardize"


def test_generator_defaults_follow_the_notes():
    cfg = CONFIG.validate_python({"source": "spiral"})
    assert isinstance(cfg, SpiralData)
    assert (cfg.classes, cfg.points_per_class, cfg.noise) == (3, 100, 0.2)
    assert cfg.preprocess.type == "none" and cfg.split.val == 0.0 and cfg.seed is None


@pytest.mark.parametrize("source, model", [
    ("blobs", BlobsData), ("mnist", MnistData), ("fashion-mnist", MnistData),
    ("data/a.csv", FileData), ("x.npz", FileData),
])
def test_source_picks_variant(source, model):
    extra = {"target": "label"} if source.endswith(".csv") else {}
    assert isinstance(CONFIG.validate_python({"source": source, **extra}), model)


def test_pair_and_explicit_files():
    cfg = CONFIG.validate_python({"source": {"x": "x.npy", "y": "y.npy"}, "mmap": True})
    assert isinstance(cfg.source, FilePair) and cfg.mmap
    files = CONFIG.validate_python({"train": "tr.npz", "test": "te.npz", "split": {"val": 0.1}})
    assert isinstance(files, FilesData) and files.val is None


def test_scale_preprocess_mapping():
    cfg = CONFIG.validate_python({"source": "digits",
                                  "preprocess": {"type": "scale", "factor": 0.0625}})
    assert cfg.preprocess.factor == 0.0625


def test_every_field_has_a_description():
    for model in DATA_VARIANTS.values():
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}"


@pytest.mark.parametrize("section, loc, fragment", [
    ({"source": "spiral", "nois": 0.1}, ("spiral", "nois"), "Extra inputs"),
    ({"source": "moons", "classes": 3}, ("moons", "classes"), "Extra inputs"),
    ({"source": "spiral", "points_per_class": 0}, ("spiral", "points_per_class"), "greater than or equal"),
    ({"source": "blobs", "spread": 0}, ("blobs", "spread"), "greater than 0"),
    ({"source": "spirl"}, ("file", "source"), "did you mean 'spiral'"),
    ({"source": "x.npy"}, ("file", "source"), "give a pair"),
    ({"source": "train.csv"}, ("file",), "target: name the label column"),
    ({"source": "a.csv", "target": "y", "mmap": True}, ("file",), "mmap: only used with npy"),
    ({"source": "a.npz", "target": "y"}, ("file",), "target: only used with csv"),
    ({"train": "a.csv", "test": "b.npz", "target": "y"}, ("files",), "one format"),
    ({"train": "a.npz", "val": "b.npz", "split": {"val": 0.1}}, ("files",), "split.val"),
    ({"source": "mnist", "split": {"test": 0.1}}, ("mnist",), "own test set"),
    ({"source": "digits", "split": {"val": 0.5, "test": 0.5}}, ("digits", "split"), "less than 1"),
    ({"source": "digits", "split": {"val": -0.1}}, ("digits", "split", "val"), "greater than or equal"),
    ({"source": "digits", "preprocess": "standardise"}, ("digits", "preprocess", "type"), "Input should be"),
    ({"source": "digits", "preprocess": {"type": "scale"}}, ("digits", "preprocess"), "needs a factor"),
    ({"source": "digits", "preprocess": {"type": "minmax", "factor": 2}}, ("digits", "preprocess"),
     "only used by type scale"),
    ({"source": "digits", "seed": -1}, ("digits", "seed"), "greater than or equal"),
    ({}, ("file", "source"), "Field required"),
])
def test_bad_sections(section, loc, fragment):
    found = errors(section)
    assert any(where == loc and fragment in msg for where, msg in found), found


@pytest.mark.parametrize("ref, declared, fmt", [
    ("a.csv", "auto", "csv"), ("a.NPZ", "auto", "npz"), ("a.txt", "csv", "csv"),
    (FilePair(x="x.npy", y="y.npy"), "auto", "npy"),
    (FilePair(x="train-images-idx3-ubyte.gz", y="train-labels-idx1-ubyte"), "auto", "idx"),
])
def test_file_format(ref, declared, fmt):
    assert file_format(ref, declared) == fmt
