import json
import os

import numpy as np
import pytest

from nnback.errors import CheckpointError
from nnback.runfolder.atomic import TEMP_SUFFIX
from nnback.runfolder.checkpoint import CheckpointStore, checksum, load_checkpoint, save_checkpoint


def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "param/0.W": rng.standard_normal((5, 3)).astype(np.float32),
        "param/0.b": rng.standard_normal(3),
        "optim/0.W/exp_avg": rng.standard_normal((5, 3)).astype(np.float32),
        "optim/step": np.array(17, dtype=np.int64),
        "buffer/1.running_mean": rng.standard_normal(3).astype(np.float32),
        "prep/classes": np.arange(10, dtype=np.int64),
        "prep/flags": np.array([True, False]),
    }


META = {
    "epoch": 3,
    "step": 120,
    "rng": {"bit_generator": "PCG64", "state": {"state": 2**127 + 5, "inc": 3}},
    "config": {"optimizer": {"type": "sgd", "lr": 0.1}},
    "best_val_loss": 0.25,
}


def _assert_same_arrays(loaded, expected):
    assert sorted(loaded) == sorted(expected)
    for name, array in expected.items():
        assert loaded[name].dtype == array.dtype
        assert loaded[name].shape == array.shape
        assert loaded[name].tobytes() == array.tobytes()


def test_round_trip_is_bit_exact(tmp_path):
    arrays = _arrays()
    save_checkpoint(tmp_path / "c.npz", arrays, META)
    loaded, meta = load_checkpoint(tmp_path / "c.npz")
    _assert_same_arrays(loaded, arrays)
    assert meta == META


def test_stored_meta_is_unicode_text_with_checksum(tmp_path):
    arrays = _arrays()
    save_checkpoint(tmp_path / "c.npz", arrays, META)
    with np.load(tmp_path / "c.npz", allow_pickle=False) as npz:
        meta = npz["meta"]
        assert meta.shape == () and meta.dtype.kind == "U"
        assert json.loads(meta.item())["checksum"] == checksum(arrays)


def test_checksum_depends_on_names_dtypes_shapes_and_bytes_not_memory_order():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    base = checksum({"x": a})
    assert checksum({"x": np.asfortranarray(a)}) == base
    assert checksum({"y": a}) != base
    assert checksum({"x": a.astype(np.float32)}) != base
    assert checksum({"x": a.reshape(3, 2)}) != base
    changed = a.copy()
    changed[1, 2] = np.nextafter(changed[1, 2], 10)
    assert checksum({"x": changed}) != base


def test_reserved_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'meta' is reserved"):
        save_checkpoint(tmp_path / "c.npz", {"meta": np.zeros(1)}, {})
    with pytest.raises(ValueError, match="'checksum' is reserved"):
        save_checkpoint(tmp_path / "c.npz", {}, {"checksum": "x"})


def test_flipped_data_byte_is_a_checksum_mismatch(tmp_path):
    arrays = _arrays()
    path = tmp_path / "last.npz"
    save_checkpoint(path, arrays, META)
    raw = bytearray(path.read_bytes())
    offset = raw.find(arrays["param/0.W"].tobytes())
    assert offset > 0
    raw[offset + 7] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"{path}: checksum mismatch (file corrupted)"


def test_array_changed_inside_a_valid_zip_is_a_checksum_mismatch(tmp_path):
    arrays = _arrays()
    path = tmp_path / "c.npz"
    save_checkpoint(path, arrays, META)
    with np.load(path, allow_pickle=False) as npz:
        stored = {name: npz[name] for name in npz.files}
    stored["param/0.b"] = stored["param/0.b"] + 1.0
    np.savez(path, **stored)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep_fraction", [0.0, 0.1, 0.5, 0.99])
def test_truncated_file_is_reported(tmp_path, keep_fraction):
    path = tmp_path / "c.npz"
    save_checkpoint(path, _arrays(), META)
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep_fraction)])
    with pytest.raises(CheckpointError, match=rf"^{path}: truncated or not an \.npz file"):
        load_checkpoint(path)


def test_missing_file_and_missing_meta(tmp_path):
    with pytest.raises(CheckpointError, match=rf"^{tmp_path / 'absent.npz'}: no such checkpoint$"):
        load_checkpoint(tmp_path / "absent.npz")
    np.savez(tmp_path / "plain.npz", w=np.zeros(3))
    with pytest.raises(CheckpointError, match="no 'meta' entry"):
        load_checkpoint(tmp_path / "plain.npz")


def _step_names(store):
    return [p.name for p in store.step_paths()]


def test_store_keeps_last_k_and_an_independent_copy_as_last(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for step in (10, 20, 30):
        store.save(step, _arrays(step), {**META, "step": step})
    assert _step_names(store) == ["step-000000030.npz", "step-000000020.npz"]
    assert not os.path.samefile(store.last_path, store.step_path(30))
    assert store.last_path.read_bytes() == store.step_path(30).read_bytes()
    latest = store.load_latest()
    assert latest.path == store.last_path
    assert latest.meta["step"] == 30
    assert latest.skipped == []
    _assert_same_arrays(latest.arrays, _arrays(30))
    assert not [p for p in store.dir.iterdir() if p.name.endswith(TEMP_SUFFIX)]


def test_keep_3_holds_three_independent_saves_besides_last(tmp_path):
    """Damage every file but one, each in turn: the one left is always found."""
    store = CheckpointStore(tmp_path, keep=3)
    for step in (100, 110, 120, 130):
        store.save(step, _arrays(step), {**META, "step": step})
    files = [store.last_path, *store.step_paths()]
    assert len({os.stat(f).st_ino for f in files}) == 4
    contents = {f: f.read_bytes() for f in files}
    for intact in files:
        for f in files:
            f.write_bytes(contents[f] if f == intact else contents[f][:200])
        latest = store.load_latest()
        assert latest.path == intact
        assert latest.meta["step"] == (130 if intact == store.last_path else int(intact.stem[5:]))


def test_load_latest_falls_back_past_corrupt_files(tmp_path):
    store = CheckpointStore(tmp_path, keep=3)
    for step in (100, 110, 120, 130):
        store.save(step, _arrays(step), {**META, "step": step})
    for path in (store.last_path, store.step_path(130)):
        path.write_bytes(path.read_bytes()[:200])
    latest = store.load_latest()
    assert latest.path == store.step_path(120)
    assert latest.meta["step"] == 120
    reason = "truncated or not an .npz file (File is not a zip file)"
    assert latest.skipped == [(store.last_path, reason), (store.step_path(130), reason)]
    assert latest.warnings()[0] == (
        f"{store.last_path}: truncated or not an .npz file (File is not a zip file); "
        f"falling back to {store.step_path(120)}"
    )


def test_load_latest_none_without_checkpoints_and_error_when_all_bad(tmp_path):
    store = CheckpointStore(tmp_path)
    assert store.load_latest() is None
    store.save(1, _arrays(), META)
    store.step_path(1).write_bytes(b"")
    store.last_path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=rf"^{store.dir}: no readable checkpoint \("):
        store.load_latest()


def test_save_best_and_resave_same_step(tmp_path):
    store = CheckpointStore(tmp_path, keep=1)
    assert store.load_best() is None
    store.save_best(_arrays(1), {"epoch": 1})
    store.save(7, _arrays(1), META)
    store.save(7, _arrays(2), META)
    assert _step_names(store) == ["step-000000007.npz"]
    _assert_same_arrays(store.load_latest().arrays, _arrays(2))
    arrays, meta = store.load_best()
    assert meta == {"epoch": 1}
    _assert_same_arrays(arrays, _arrays(1))


def test_corrupt_best_is_reported(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save_best(_arrays(), META)
    store.best_path.write_bytes(store.best_path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=rf"^{store.best_path}: truncated or not an \.npz file"):
        store.load_best()
