import json
import logging

import numpy as np
import pytest

from nnback.errors import RunIOError
from nnback.runfolder.jsonl import JsonlWriter, read_jsonl, truncate_after

RECORDS = [{"epoch": e, "step": 10 * e, "train_loss": 1.0 / e} for e in (1, 2, 3)]


def _write(path, records, **kwargs):
    with JsonlWriter(path, **kwargs) as writer:
        for record in records:
            writer.write(record)


def test_one_line_per_record_round_trip(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write(path, RECORDS[:2], sync=True)
    _write(path, RECORDS[2:])
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == RECORDS
    assert read_jsonl(path) == RECORDS


def test_numpy_scalars_and_arrays_are_written_as_plain_json(tmp_path):
    path = tmp_path / "m.jsonl"
    _write(path, [{"loss": np.float32(0.5), "step": np.int64(3), "hist": np.arange(3)}])
    assert read_jsonl(path) == [{"loss": 0.5, "step": 3, "hist": [0, 1, 2]}]


def test_truncated_last_line_is_skipped_silently(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    _write(path, RECORDS)
    path.write_bytes(path.read_bytes() + b'{"epoch": 4, "step": 4')
    with caplog.at_level(logging.WARNING):
        assert read_jsonl(path) == RECORDS
    assert caplog.records == []


def test_invalid_line_in_the_middle_is_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\nnot json\n[1, 2]\n\n" + json.dumps(RECORDS[1]) + "\n")
    with caplog.at_level(logging.WARNING):
        assert read_jsonl(path) == RECORDS[:2]
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}:2: invalid JSON line skipped",
        f"{path}:3: invalid JSON line skipped",
    ]


def test_a_warning_names_a_path_with_a_newline_on_one_line(tmp_path, caplog):
    folder = tmp_path / "run\nfake: line"
    folder.mkdir()
    path = folder / "metrics.jsonl"
    path.write_text("not json\n" + json.dumps(RECORDS[0]) + "\n")
    with caplog.at_level(logging.WARNING):
        assert read_jsonl(path) == RECORDS[:1]
    [message] = [r.getMessage() for r in caplog.records]
    shown = str(path).replace("\n", "\\n")
    assert message == f"{shown}:1: invalid JSON line skipped"


@pytest.mark.parametrize("partial", [b'{"epoch": 4', b"x" * 70000])
def test_writer_cuts_the_incomplete_line_a_killed_writer_left(tmp_path, partial):
    path = tmp_path / "metrics.jsonl"
    _write(path, RECORDS[:2])
    path.write_bytes(path.read_bytes() + partial)
    _write(path, RECORDS[2:])
    assert path.read_text().splitlines() == [json.dumps(r) for r in RECORDS]


def test_writer_cuts_a_file_with_no_complete_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"epo')
    _write(path, RECORDS[:1])
    assert read_jsonl(path) == RECORDS[:1]


def test_truncate_after_drops_records_beyond_the_checkpoint_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write(path, RECORDS + [{"note": "no step"}])
    path.write_bytes(path.read_bytes() + b'{"step": 40, "tra')
    kept = truncate_after(path, 20)
    assert kept == RECORDS[:2] + [{"note": "no step"}]
    assert read_jsonl(path) == kept
    assert path.read_bytes().endswith(b"\n")
    assert truncate_after(tmp_path / "absent.jsonl", 5) == []
    assert not (tmp_path / "absent.jsonl").exists()


def test_unwritable_path_is_run_io_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunIOError, match="metrics.jsonl: cannot write: Not a directory"):
        JsonlWriter(tmp_path / "file" / "metrics.jsonl")
