"""``trials.jsonl``: the append-only journal a sweep decides everything from.

Only the sweep process writes it, one JSON line per state change of a trial::

    {"trial": "0003-1a2b3c4d", "state": "started", "index": 3, "params": {...},
     "repeat": 0, "seed": 17, "attempt": 1, "time": "..."}
    {"trial": "0003-1a2b3c4d", "state": "completed", "score": 0.21, "epoch": 12, ...}

A re-run reads it back: the last state of each trial says whether it is done
(``completed``, ``time_limit``, ``pruned``), ``failed`` (retried with --retry-failed) or
still to run (``started``, ``interrupted``, ``requeued``: resumed from its checkpoints).
Lines are written whole by one ``os.write`` and fsynced, so a kill damages at most the
last, unfinished one, which readers skip.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

from nnback.runfolder.jsonl import JsonlWriter, read_jsonl

JOURNAL = "trials.jsonl"
DONE = ("completed", "time_limit", "pruned")
STATES = ("started", "requeued", "interrupted", "failed") + DONE
DEFINING = ("trial", "index", "params", "repeat", "seed")


@dataclasses.dataclass
class TrialState:
    """What the journal says about one trial: its defining fields and latest record."""

    trial: dict  # {"trial", "index", "params", "repeat", "seed"}
    state: str
    last: dict

    @property
    def done(self) -> bool:
        return self.state in DONE


class Journal:
    """The journal of the sweep folder ``folder``, open for appending, and the state of
    every trial in it (``states``, kept up to date by ``append``)."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / JOURNAL
        self.states = read_states(folder)
        self._writer = JsonlWriter(self.path, sync=True)

    def append(self, record: dict) -> None:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        record = {**record, "time": now}
        self._writer.write(record)
        _apply(self.states, record)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_states(folder: str | Path) -> dict[str, TrialState]:
    """The latest state of every trial in ``folder``'s journal, by trial id."""
    states: dict[str, TrialState] = {}
    for record in read_jsonl(Path(folder) / JOURNAL, missing_ok=True):
        _apply(states, record)
    return states


def _apply(states: dict[str, TrialState], record: dict) -> None:
    trial_id, state = record.get("trial"), record.get("state")
    if not isinstance(trial_id, str) or state not in STATES:
        return
    if state == "started":
        known = states.get(trial_id)
        defining = known.trial if known else {k: record[k] for k in DEFINING if k in record}
        states[trial_id] = TrialState(defining, state, record)
    elif trial_id in states:
        states[trial_id].state, states[trial_id].last = state, record
