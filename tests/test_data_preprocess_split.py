"""Preprocessing statistics and state, and seeded stratified splits."""

import numpy as np
import pytest

from nnback.data import table
from nnback.data.preprocess import Preprocessor
from nnback.data.split import split_rows
from nnback.errors import DataError


@pytest.fixture
def X():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(500, 4))
    data[:, 2] = 7.0
    return data


def test_standardize(X):
    out = Preprocessor("standardize").fit(X).transform(X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), [1, 1, 0, 1], atol=1e-5)


def test_minmax_and_scale(X):
    out = Preprocessor("minmax").fit(X).transform(X)
    np.testing.assert_allclose(out.min(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(out.max(axis=0), [1, 1, 0, 1], atol=1e-6)
    pixels = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    np.testing.assert_allclose(Preprocessor("scale", 1 / 255).fit(pixels).transform(pixels),
                               [[0, 1], [0.2, 0.4]], rtol=1e-6)
    none = Preprocessor().fit(pixels).transform(pixels)
    assert none.dtype == np.float32 and none.tolist() == pixels.tolist()


def test_chunked_statistics_match_numpy(X, monkeypatch):
    monkeypatch.setattr(table, "CHUNK_BYTES", 7 * 4 * 8)
    rows = np.arange(0, 500, 3)
    prep = Preprocessor("standardize").fit(X, rows)
    np.testing.assert_allclose(prep.shift, X[rows].mean(axis=0), rtol=1e-6)
    expected_std = X[rows].std(axis=0)
    np.testing.assert_allclose(1 / prep.scale[[0, 1, 3]], expected_std[[0, 1, 3]], rtol=1e-6)
    minmax = Preprocessor("minmax").fit(X, rows)
    np.testing.assert_allclose(minmax.shift, X[rows].min(axis=0), rtol=1e-6)


def test_transform_into_buffer_and_feature_check(X):
    prep = Preprocessor("standardize").fit(X)
    buffer = np.empty((10, 4), np.float32)
    out = prep.transform(X[:10], out=buffer)
    assert out is buffer
    np.testing.assert_allclose(buffer, prep.transform(X[:10]))
    with pytest.raises(DataError, match="^input has 3 features; the preprocessing was fitted on 4$"):
        prep.transform(X[:, :3])


@pytest.mark.parametrize("kind, factor", [("none", None), ("standardize", None),
                                          ("minmax", None), ("scale", 0.5)])
def test_state_dict_round_trip(X, kind, factor, tmp_path):
    prep = Preprocessor(kind, factor).fit(X)
    np.savez(tmp_path / "p.npz", **prep.state_dict())
    with np.load(tmp_path / "p.npz", allow_pickle=False) as saved:
        again = Preprocessor.from_state_dict(dict(saved))
    assert again.kind == kind and again.factor == factor
    np.testing.assert_array_equal(again.transform(X), prep.transform(X))


def test_bad_state_dict():
    with pytest.raises(DataError, match="saved preprocessing lacks 'scale'"):
        Preprocessor.from_state_dict({"kind": np.array("none"), "shift": np.zeros(2)})
    with pytest.raises(DataError, match="saved preprocessing is invalid"):
        Preprocessor.from_state_dict({"kind": np.array("bogus"), "shift": np.zeros(2),
                                      "scale": np.ones(2)})


def labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def test_stratified_split_is_seeded_sorted_and_proportional():
    y = labels([100, 60, 40])
    parts = split_rows(len(y), 0.15, 0.25, np.random.default_rng(5), y, [0, 1, 2])
    again = split_rows(len(y), 0.15, 0.25, np.random.default_rng(5), y, [0, 1, 2])
    other = split_rows(len(y), 0.15, 0.25, np.random.default_rng(6), y, [0, 1, 2])
    for a, b in zip(parts, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(parts[1], other[1])
    train, val, test = parts
    assert all(np.all(np.diff(p) > 0) for p in parts)
    assert len(np.intersect1d(train, val)) == len(np.intersect1d(train, test)) == 0
    assert len(train) + len(val) + len(test) == 200
    assert np.bincount(y[val]).tolist() == [15, 9, 6]
    assert np.bincount(y[test]).tolist() == [25, 15, 10]


def test_unstratified_split():
    train, val, test = split_rows(10, 0.2, 0.0, np.random.default_rng(0))
    assert (len(train), len(val), len(test)) == (8, 2, 0)


def test_split_errors():
    with pytest.raises(DataError, match=r"leaves class 'rare' \(2 rows\) with no training row"):
        split_rows(12, 0.3, 0.3, np.random.default_rng(0), labels([10, 2]), ["common", "rare"])
    with pytest.raises(DataError, match="^data.split.val: 0.01 of 20 rows leaves the val split empty$"):
        split_rows(20, 0.01, 0.0, np.random.default_rng(0))
    with pytest.raises(DataError, match="leave no training row"):
        split_rows(2, 0.4, 0.4, np.random.default_rng(0))
