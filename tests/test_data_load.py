"""load_data end to end: every source, splits, preprocessing, memory maps, predict inputs."""

import gzip
import json

import numpy as np
import pytest
from pydantic import TypeAdapter

from nnback.config.data_schema import DataConfig
from nnback.data import (
    DataMeta,
    Preprocessor,
    labels_from_indices,
    load_data,
    read_inputs,
    read_labelled,
)
from nnback.data.builtin import FASHION_CLASSES
from nnback.data.fetch import IDX_FILES
from nnback.data.idx import idx_bytes
from nnback.data.labels import encode
from nnback.data.table import Table
from nnback.errors import DataError

CONFIG = TypeAdapter(DataConfig)


def load(section, tmp_path=None, seed=0):
    return load_data(CONFIG.validate_python(section), seed, tmp_path or ".")


def test_spiral_split_is_reproducible_and_seeded():
    section = {"source": "spiral", "split": {"val": 0.2, "test": 0.1}}
    a, b, c = load(section), load(section), load(section, seed=1)
    np.testing.assert_array_equal(a.val.X, b.val.X)
    np.testing.assert_array_equal(a.train.y, b.train.y)
    assert not np.array_equal(a.val.X, c.val.X)
    fixed = {**section, "seed": 7}
    np.testing.assert_array_equal(load(fixed, seed=0).val.X, load(fixed, seed=1).val.X)
    assert (len(a.train), len(a.val), len(a.test)) == (210, 60, 30)
    assert np.bincount(a.val.y).tolist() == [20, 20, 20]
    assert a.task == "classification" and a.classes == [0, 1, 2]
    assert (a.n_features, a.n_outputs) == (2, 3)


def test_preprocessing_is_fitted_on_train_only():
    bundle = load({"source": "blobs", "split": {"val": 0.3}, "preprocess": "standardize"})
    assert bundle.train.X.dtype == np.float32
    np.testing.assert_allclose(bundle.train.X.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(bundle.train.X.std(axis=0), 1.0, atol=1e-5)
    assert np.abs(bundle.val.X.mean(axis=0)).max() > 1e-3


def test_take_gathers_into_a_reused_buffer():
    split = load({"source": "moons"}).train
    buffer = np.empty((8, 2), np.float32)
    idx = np.array([5, 0, 199])
    Xb, yb = split.take(idx, out_X=buffer)
    assert np.shares_memory(Xb, buffer) and Xb.shape == (3, 2)
    np.testing.assert_array_equal(Xb, split.X[idx])
    np.testing.assert_array_equal(yb, split.y[idx])
    with pytest.raises(IndexError):
        split.take(np.array([200]))
    batches = list(split.batches(64))
    assert [len(b[1]) for b in batches] == [64, 64, 64, 8]


def test_regression_sources():
    bundle = load({"source": "linear", "targets": 2, "split": {"test": 0.25}})
    assert bundle.task == "regression" and bundle.classes is None
    assert bundle.train.y.shape == (150, 2) and bundle.train.y.dtype == np.float32
    assert bundle.n_outputs == 2 and len(bundle.test) == 50


def test_digits_shipped_file():
    bundle = load({"source": "digits", "split": {"val": 0.15, "test": 0.15},
                   "preprocess": {"type": "scale", "factor": 0.0625}})
    assert bundle.classes == list(range(10)) and bundle.n_features == 64
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 1797
    assert bundle.train.X.min() == 0.0 and bundle.train.X.max() == 1.0


def write_csv(path, rows, header="x1,x2,species"):
    path.write_text(header + "\n" + "".join(f"{r}\n" for r in rows))


def test_csv_string_labels_with_split(tmp_path):
    rows = [f"{i},{i % 7},{'cat' if i % 3 else 'dog'}" for i in range(60)]
    write_csv(tmp_path / "pets.csv", rows)
    bundle = load({"source": "pets.csv", "target": "species", "split": {"val": 0.25}}, tmp_path)
    assert bundle.classes == ["cat", "dog"] and bundle.meta.feature_names == ["x1", "x2"]
    assert len(bundle.val) == 15
    names = labels_from_indices(bundle.val.y, bundle.classes)
    x1 = bundle.val.X[:, 0].astype(int)
    assert names.tolist() == ["cat" if i % 3 else "dog" for i in x1]


def test_explicit_files_check_each_other(tmp_path):
    write_csv(tmp_path / "train.csv", ["1,2,cat", "3,4,dog", "5,6,cat"])
    write_csv(tmp_path / "val.csv", ["1,2,cat", "3,4,tiger"])
    section = {"train": "train.csv", "val": "val.csv", "target": "species"}
    with pytest.raises(DataError, match=r"^val.csv: row 3, column 'species': label 'tiger' is "
                                        r"not one of the classes seen in training \(cat, dog\)$"):
        load(section, tmp_path)
    write_csv(tmp_path / "val.csv", ["1,cat"], header="x1,species")
    with pytest.raises(DataError, match="^val.csv: 1 features per row, but the training data"):
        load(section, tmp_path)
    write_csv(tmp_path / "val.csv", ["1,2,cat"], header="x1,x3,species")
    with pytest.raises(DataError, match=r"feature columns \['x1', 'x3'\] differ"):
        load(section, tmp_path)
    write_csv(tmp_path / "val.csv", ["1,nan,cat"])
    with pytest.raises(DataError, match="^val.csv: row 2, column 'x2': value is NaN$"):
        load(section, tmp_path)


def test_npz_label_errors(tmp_path):
    np.savez(tmp_path / "f.npz", X=np.zeros((4, 2)), y=np.array([0.0, 1.0, 1.5, 0.0]))
    with pytest.raises(DataError, match=r"^f.npz: y\[2\]: label 1.5 is not an integer class label$"):
        load({"source": "f.npz", "task": "classification"}, tmp_path)
    bundle = load({"source": "f.npz"}, tmp_path)
    assert bundle.task == "regression"
    np.savez(tmp_path / "g.npz", X=np.zeros((4, 2)), y=np.array([0.0, 1.0, 1.0, 0.0]))
    assert load({"source": "g.npz", "task": "classification"}, tmp_path).classes == [0, 1]
    np.savez(tmp_path / "one.npz", X=np.zeros((4, 2)), y=np.ones(4, np.int64))
    with pytest.raises(DataError, match="one.npz: the training labels hold one class"):
        load({"source": "one.npz"}, tmp_path)
    np.savez(tmp_path / "nan.npz", X=np.zeros((2, 2)), y=np.array([0.5, np.nan]))
    with pytest.raises(DataError, match=r"^nan.npz: y\[1\]: value is NaN$"):
        load({"source": "nan.npz"}, tmp_path)


def test_missing_file_and_split_errors(tmp_path):
    with pytest.raises(DataError) as missing:
        load({"source": "missing.npz"}, tmp_path)
    assert str(missing.value) == (f"missing.npz: file not found in {tmp_path.resolve()} "
                                  "(relative data paths start from there)")
    with pytest.raises(DataError, match=r"^/nowhere/x.npz: file not found$"):
        load({"source": "/nowhere/x.npz"}, tmp_path)
    np.savez(tmp_path / "r.npz", X=np.arange(12.0).reshape(6, 2), y=np.array([0, 0, 0, 0, 1, 1]))
    with pytest.raises(DataError, match="leaves class 1 .2 rows. with no training row"):
        load({"source": "r.npz", "split": {"val": 0.3, "test": 0.3}}, tmp_path)


def make_npy_pair(tmp_path, n=300, d=6):
    rng = np.random.default_rng(3)
    np.save(tmp_path / "x.npy", rng.normal(5.0, 3.0, size=(n, d)).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, size=n))


def test_memory_mapped_split_equals_in_memory(tmp_path):
    make_npy_pair(tmp_path)
    section = {"source": {"x": "x.npy", "y": "y.npy"}, "split": {"val": 0.2},
               "preprocess": "standardize"}
    mapped = load({**section, "mmap": True}, tmp_path)
    memory = load(section, tmp_path)
    assert mapped.train.lazy and not memory.train.lazy
    np.testing.assert_array_equal(mapped.preprocessor.shift, memory.preprocessor.shift)
    idx = np.array([3, 0, 50, 7])
    buffer = np.empty((16, 6), np.float32)
    Xm, ym = mapped.val.take(idx, out_X=buffer)
    Xi, yi = memory.val.take(idx)
    np.testing.assert_allclose(Xm, Xi, rtol=0, atol=0)
    np.testing.assert_array_equal(ym, yi)
    assert np.shares_memory(Xm, buffer)


def test_memory_mapped_nan_is_found(tmp_path):
    X = np.zeros((50, 3), np.float32)
    X[41, 2] = np.inf
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", np.arange(50) % 2)
    with pytest.raises(DataError, match=r"^x.npy: X\[41, 2\]: value is inf$"):
        load({"source": {"x": "x.npy", "y": "y.npy"}, "mmap": True}, tmp_path)
    np.save(tmp_path / "y.npy", np.arange(49) % 2)
    with pytest.raises(DataError, match="^x.npy: X has 50 rows but y.npy: y has 49$"):
        load({"source": {"x": "x.npy", "y": "y.npy"}, "mmap": True}, tmp_path)


def write_idx_set(folder, n_train=40, n_test=10, compress=True):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 4, 4), dtype=np.uint8),
              "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
              "test_images": rng.integers(0, 256, (n_test, 4, 4), dtype=np.uint8),
              "test_labels": (np.arange(n_test) % 10).astype(np.uint8)}
    for key, array in arrays.items():
        data = idx_bytes(array)
        (folder / IDX_FILES[key]).write_bytes(gzip.compress(data) if compress else data)
    return arrays


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_mnist_sources_read_fetched_files(tmp_path, name):
    arrays = write_idx_set(tmp_path / "data" / name)
    bundle = load({"source": name, "split": {"val": 0.25},
                   "preprocess": {"type": "scale", "factor": 1 / 255}}, tmp_path)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (30, 10, 10)
    assert bundle.n_features == 16
    np.testing.assert_allclose(bundle.test.X, arrays["test_images"].reshape(10, 16) / 255, rtol=1e-6)
    expected = FASHION_CLASSES if name == "fashion-mnist" else list(range(10))
    assert bundle.classes == expected


def test_mnist_missing_files_say_how_to_fetch(tmp_path):
    with pytest.raises(DataError, match=r"run `nnback data fetch mnist --dir data/mnist`"):
        load({"source": "mnist"}, tmp_path)


def test_idx_pair_files(tmp_path):
    write_idx_set(tmp_path, compress=False)
    bundle = load({"train": {"x": IDX_FILES["train_images"], "y": IDX_FILES["train_labels"]},
                   "test": {"x": IDX_FILES["test_images"], "y": IDX_FILES["test_labels"]}},
                  tmp_path)
    assert (len(bundle.train), len(bundle.test), bundle.val) == (40, 10, None)


def saved(bundle):
    """The bundle's meta and preprocessing as a checkpoint would restore them."""
    meta = DataMeta.from_dict(json.loads(json.dumps(bundle.meta.to_dict())))
    prep = Preprocessor.from_state_dict({k: np.array(v) for k, v in
                                         bundle.preprocessor.state_dict().items()})
    return meta, prep


def test_read_inputs_applies_saved_preprocessing(tmp_path):
    rows = [f"{i},{2 * i},{'a' if i % 2 else 'b'}" for i in range(20)]
    write_csv(tmp_path / "train.csv", rows)
    bundle = load({"source": "train.csv", "target": "species", "preprocess": "minmax"}, tmp_path)
    meta, prep = saved(bundle)
    (tmp_path / "new.csv").write_text("x2,other,x1\n38,zz,19\n0,zz,0\n")
    np.testing.assert_allclose(read_inputs(tmp_path / "new.csv", meta, prep), [[1, 1], [0, 0]])
    np.save(tmp_path / "new.npy", np.array([[19.0, 38.0]]))
    np.testing.assert_allclose(read_inputs(tmp_path / "new.npy", meta, prep), [[1, 1]])
    np.save(tmp_path / "bad.npy", np.zeros((2, 3)))
    with pytest.raises(DataError, match="^.*bad.npy: 3 features per row, but the model was trained on 2$"):
        read_inputs(tmp_path / "bad.npy", meta, prep)
    (tmp_path / "nan.csv").write_text("x1,x2\n1,2\n3,nan\n")
    with pytest.raises(DataError, match=r"nan.csv: row 3, column 'x2': value is NaN$"):
        read_inputs(tmp_path / "nan.csv", meta, prep)
    assert labels_from_indices(np.array([1, 0]), meta.classes).tolist() == ["b", "a"]


def test_read_inputs_npz_and_idx(tmp_path):
    bundle = load({"source": "digits"})
    meta, prep = saved(bundle)
    images = np.zeros((3, 8, 8), np.uint8)
    np.savez(tmp_path / "in.npz", X=images)
    assert read_inputs(tmp_path / "in.npz", meta, prep).shape == (3, 64)
    (tmp_path / "in-images-idx3-ubyte").write_bytes(idx_bytes(images))
    assert read_inputs(tmp_path / "in-images-idx3-ubyte", meta, prep).dtype == np.float32


def test_read_labelled_uses_saved_classes_and_preprocessing(tmp_path):
    write_csv(tmp_path / "train.csv", ["0,0,cat", "10,20,dog", "5,5,cat"])
    train_cfg = {"source": "train.csv", "target": "species", "preprocess": "minmax"}
    meta, prep = saved(load(train_cfg, tmp_path))
    write_csv(tmp_path / "eval.csv", ["10,20,dog", "0,0,cat"])
    split = read_labelled(CONFIG.validate_python({**train_cfg, "source": "eval.csv"}),
                          tmp_path, meta, prep)
    np.testing.assert_allclose(split.X, [[1, 1], [0, 0]])
    assert split.y.tolist() == [1, 0]
    write_csv(tmp_path / "eval.csv", ["1,2,cow"])
    with pytest.raises(DataError, match=r"^eval.csv: row 2, column 'species': label 'cow' is not"):
        read_labelled(CONFIG.validate_python({**train_cfg, "source": "eval.csv"}),
                      tmp_path, meta, prep)


def test_saved_class_order_is_kept():
    table = Table(np.zeros((3, 1)), np.array([9, 0, 5]), "f", "f")
    assert encode(table, table.y, [5, 9, 0]).tolist() == [1, 2, 0]
