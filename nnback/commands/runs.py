"""Run folders side by side: ``nnback runs [DIR]`` and the labels ``nnback plot`` uses.

A run folder is any folder holding ``config.yaml``; ``summary.json``, ``metrics.jsonl``
and ``diagnostics.jsonl`` are read when present (a run still going, or killed, has no
summary yet and shows the status ``incomplete``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from pathlib import Path

from nnback.config.diff import differing_keys, flatten
from nnback.config.loader import read_yaml
from nnback.errors import NnbackError
from nnback.formatting import duration, format_table

STATUSES = ("completed", "early_stopped", "interrupted", "time_limit", "diverged", "failed",
            "incomplete")
FORMATS = ("table", "csv", "json")


@dataclasses.dataclass
class Run:
    """What one run folder holds.

    Attributes:
        path: the folder.
        config: the resolved config (``config.yaml``) as a dict.
        summary: ``summary.json``, or {} while the run has none.
        metrics: the records of ``metrics.jsonl`` (one per evaluation), maybe [].
    """

    path: Path
    config: dict
    summary: dict
    metrics: list[dict]

    @property
    def name(self) -> str:
        return str(self.summary.get("name") or self.config.get("name") or self.path.name)

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "incomplete"))


def load_run(path: str | Path) -> Run:
    """Read the run folder ``path``.

    Raises:
        NnbackError: not a run folder (no ``config.yaml``), or an unreadable file.
    """
    from nnback.runfolder.jsonl import read_json, read_jsonl

    path = Path(path)
    config_path = path / "config.yaml"
    if not config_path.is_file():
        raise NnbackError(f"{path}: not a run folder (no config.yaml)")
    config = read_yaml(config_path)
    metrics = read_jsonl(path / "metrics.jsonl", missing_ok=True)
    return Run(path, config, read_json(path / "summary.json") or {}, metrics)


def find_runs(root: str | Path) -> list[Path]:
    """Every run folder at or below ``root``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise NnbackError(f"{root}: no such folder")
    return sorted(p.parent for p in root.rglob("config.yaml"))


def run_labels(runs: list[Run]) -> list[str]:
    """A legend label per run: its name and the hyperparameters in which the runs differ.

    Runs with the same name and config are told apart by their folder name.
    """
    keys = differing_keys([r.config for r in runs])
    short = [k.rsplit(".", 1)[-1] for k in keys]
    if len(set(short)) < len(short):
        short = keys
    flats = [flatten(r.config) for r in runs]
    labels = []
    for run, flat in zip(runs, flats, strict=True):
        parts = [f"{s}={flat.get(k, '-')}" for s, k in zip(short, keys, strict=True)]
        labels.append(run.name + (f" ({', '.join(parts)})" if parts else ""))
    if len(set(labels)) < len(labels):
        labels = [f"{label} [{run.path.name}]" for label, run in zip(labels, runs, strict=True)]
    return labels


def lower_is_better(metric: str) -> bool:
    return "accuracy" not in metric


def best_of(metrics: list[dict], metric: str) -> tuple[float | None, int | None]:
    """Best value of ``metric`` over the evaluation records, and its epoch."""
    values = [(r[metric], r.get("epoch")) for r in metrics
              if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
    if not values:
        return None, None
    pick = min if lower_is_better(metric) else max
    return pick(values, key=lambda v: v[0])


def _primary_metric(runs: list[Run]) -> str:
    """The validation metric to rank by: the shared early-stopping metric, else accuracy."""
    chosen = {next(iter(r.summary.get("best") or {}), None) for r in runs}
    if len(chosen) == 1 and None not in chosen:
        return chosen.pop()
    if any("val_accuracy" in m for r in runs for m in r.metrics):
        return "val_accuracy"
    return "val_loss"


def run_rows(root: str | Path) -> list[dict]:
    """One dict per run under ``root``: run, name, status, differing keys, results.

    Results: the best validation loss (and accuracy, for classification) over the
    evaluations, the epoch of the best value of the ranking metric (the shared
    early-stopping metric, else accuracy, else loss; its column comes just before),
    the test metric, epochs and seconds.
    """
    root = Path(root)
    runs = [load_run(p) for p in find_runs(root)]
    keys = differing_keys([r.config for r in runs])
    primary = _primary_metric(runs)
    classified = any("val_accuracy" in m for r in runs for m in r.metrics)
    shown = ["val_loss", "val_accuracy"] if classified else ["val_loss"]
    shown = [m for m in shown if m != primary] + [primary]  # the epoch column follows its metric
    tested = any("test_accuracy" in r.summary.get("final", {}) for r in runs)
    test = "test_accuracy" if tested else "test_loss"
    rows = []
    for run in runs:
        flat = flatten(run.config)
        last = run.metrics[-1] if run.metrics else {}
        row = {"run": str(run.path.relative_to(root)), "name": run.name, "status": run.status}
        row.update((k, flat.get(k)) for k in keys)
        row.update((f"best_{m}", best_of(run.metrics, m)[0]) for m in shown)
        row["best_epoch"] = best_of(run.metrics, primary)[1]
        row[test] = run.summary.get("final", {}).get(test)
        row["epochs"] = run.summary.get("epochs", last.get("epoch"))
        row["seconds"] = run.summary.get("wall_seconds", last.get("seconds"))
        rows.append(row)
    return rows


def _sort_key(rows: list[dict], key: str) -> str:
    columns = list(rows[0]) if rows else []
    for candidate in (key, f"best_{key}"):
        if candidate in columns:
            return candidate
    raise NnbackError(f"--sort {key}: no such column; choose one of {', '.join(columns)}")


def _sorted(rows: list[dict], key: str) -> list[dict]:
    column = _sort_key(rows, key)
    present = [r for r in rows if r[column] is not None]
    missing = [r for r in rows if r[column] is None]
    descending = column.endswith("accuracy")
    try:
        present.sort(key=lambda r: r[column], reverse=descending)
    except TypeError:
        present.sort(key=lambda r: str(r[column]), reverse=descending)
    return present + missing


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "seconds":
        return duration(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)


def runs_table(root: str | Path = "runs", sort: str | None = None, status: str | None = None,
               fmt: str = "table") -> str:
    """The runs under ``root`` as text: ``nnback runs``.

    Args:
        root: folder searched recursively for run folders.
        sort: column to sort by (``val_loss`` also finds ``best_val_loss``); accuracy
            columns sort best first, everything else ascending; missing values last.
        status: keep only runs with one of these statuses (comma-separated).
        fmt: ``table`` (aligned text), ``csv`` or ``json``.

    Raises:
        NnbackError: unknown format, status or sort column; no such folder.
    """
    if fmt not in FORMATS:
        raise NnbackError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    rows = run_rows(root)
    if status:
        wanted = [s.strip() for s in status.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in STATUSES]
        if unknown:
            raise NnbackError(f"--status {', '.join(unknown)}: choose from {', '.join(STATUSES)}")
        rows = [r for r in rows if r["status"] in wanted]
    rows = _sorted(rows, sort) if sort and rows else rows
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if not rows:
        return f"no runs under {root}" if fmt == "table" else ""
    headers = list(rows[0])
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=headers, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()}
                         for r in rows)
        return out.getvalue().rstrip("\n")
    return format_table(headers, [[_cell(k, r[k]) for k in headers] for r in rows])
