"""What a sweep found: ``summary.json``, ``best.yaml``, the ``best`` link and the table.

All of it is derived from the journal, so it can be rewritten at any time (at the end
of every run, finished or stopped) and always agrees with ``trials.jsonl``.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
from pathlib import Path

from nnback.formatting import duration, format_table
from nnback.runfolder.atomic import atomic_write_json, atomic_write_text, fsync_dir, io_error
from nnback.sweep.journal import TrialState
from nnback.sweep.spec import SweepSpec

SCORED = ("completed", "time_limit")  # states whose score can be the best


def ranked(spec: SweepSpec, states: dict[str, TrialState]) -> list[TrialState]:
    """Trials with a final score, best first; ties go to the lowest trial id."""
    sign = -1.0 if spec.maximise else 1.0
    scored = [s for s in states.values() if s.state in SCORED and s.last.get("score") is not None]
    return sorted(scored, key=lambda s: (sign * s.last["score"], s.trial["trial"]))


def build_summary(spec: SweepSpec, states: dict[str, TrialState], status: str, planned: int | None) -> dict:
    """The content of summary.json.

    Args:
        status: ``completed``, ``interrupted``, ``time_limit`` or ``failed`` (--fail-fast).
        planned: trials the sweep runs in all (None when Optuna decides as it goes).
    """
    counts: dict[str, int] = {}
    for state in states.values():
        name = state.state if state.state in (*SCORED, "pruned", "failed") else "interrupted"
        counts[name] = counts.get(name, 0) + 1
    if planned is not None and planned > len(states):
        counts["pending"] = planned - len(states)
    best = ranked(spec, states)
    summary = {"name": spec.name, "status": status, "metric": spec.metric,
               "direction": "max" if spec.maximise else "min", "trials": counts, "best": None}
    if best:
        top = best[0]
        summary["best"] = {"trial": top.trial["trial"], "params": top.trial["params"],
                           "score": top.last["score"], "epoch": top.last.get("epoch")}
    if spec.repeats > 1:
        summary["combinations"] = _combinations(spec, best)
    return summary


def _combinations(spec: SweepSpec, scored: list[TrialState]) -> list[dict]:
    """Mean and standard deviation of the score per parameter combination, best first."""
    groups: dict[str, list[TrialState]] = {}
    for state in scored:
        groups.setdefault(json.dumps(state.trial["params"], sort_keys=True), []).append(state)
    rows = []
    for members in groups.values():
        scores = [m.last["score"] for m in members]
        rows.append({"params": members[0].trial["params"], "mean": statistics.fmean(scores),
                     "std": statistics.stdev(scores) if len(scores) > 1 else 0.0, "n": len(scores),
                     "trials": sorted(m.trial["trial"] for m in members)})
    sign = -1.0 if spec.maximise else 1.0
    return sorted(rows, key=lambda r: (sign * r["mean"], r["trials"][0]))


def write_outputs(folder: Path, summary: dict) -> None:
    """Write summary.json, and best.yaml and the ``best`` link when there is a best trial."""
    best = summary.get("best")
    if best is not None:
        trial_dir = folder / "trials" / best["trial"]
        config = trial_dir / "config.yaml"
        if config.is_file():
            atomic_write_text(folder / "best.yaml", config.read_text(encoding="utf-8"))
        _link(folder / "best", Path("trials") / best["trial"])
    atomic_write_json(folder / "summary.json", summary)


def _link(path: Path, target: Path) -> None:
    """Point the symbolic link ``path`` at ``target``, replacing it atomically."""
    temp = path.with_name(f".{path.name}.link.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)
    try:
        os.symlink(target, temp)
        os.replace(temp, path)
    except OSError as exc:
        raise io_error(path, exc) from exc
    fsync_dir(path.parent)


def table(spec: SweepSpec, states: dict[str, TrialState]) -> str:
    """Every trial, best first then the rest by id: its varying parameters, score, epoch,
    status, time and BLAS threads."""
    keys = list(spec.parameters)
    best = ranked(spec, states)
    rest = sorted((s for s in states.values() if s not in best), key=lambda s: s.trial["trial"])
    header = ["trial", *keys, spec.metric, "epoch", "status", "time", "threads"]
    rows = []
    for state in best + rest:
        last, params = state.last, state.trial.get("params", {})
        score = last.get("score")
        rows.append([state.trial["trial"], *(_short(params.get(k)) for k in keys),
                     f"{score:.4f}" if isinstance(score, float) else "-",
                     str(last.get("epoch") or "-"), state.state,
                     duration(last["seconds"]) if isinstance(last.get("seconds"), (int, float)) else "-",
                     str(last.get("threads", "-"))])
    return format_table(header, rows)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
