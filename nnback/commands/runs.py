"""Run folders side by side: ``nnback runs [DIR]`` and the labels ``nnback plot`` uses.

Runs are compared within their experiment (the config's ``name``): the table has a block
per experiment with only the settings in which its runs differ, values shortened, and
plot legends name the same settings. A run folder is any folder holding ``config.yaml``;
``summary.json``, ``metrics.jsonl`` and ``diagnostics.jsonl`` are read when present (a
run still going, or killed, has no summary yet and shows the status ``incomplete``).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
from pathlib import Path

from nnback.config.diff import differing_keys, flatten
from nnback.config.loader import read_saved_config
from nnback.errors import NnbackError, one_line
from nnback.formatting import duration, format_table
from nnback.train.evaluate import higher_is_better
from nnback.untrusted import is_int, is_number

logger = logging.getLogger(__name__)

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


# Types of the summary.json fields this module reads; others are shown as they are.
SUMMARY_FIELDS = {"name": str, "status": str, "best": dict, "final": dict, "epochs": int,
                  "wall_seconds": (int, float)}


def _read_summary(path: Path) -> dict:
    """``summary.json``, its fields checked; {} when the run has none yet.

    Raises:
        NnbackError: unreadable (see ``read_json``), not an object, or a field of the wrong type.
    """
    from nnback.runfolder.jsonl import read_json

    if not os.path.lexists(path):
        return {}
    summary = read_json(path)
    if summary is None:
        raise NnbackError(f"{path}: not a JSON object")
    for key, kind in SUMMARY_FIELDS.items():
        value = summary.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise NnbackError(f"{path}: '{key}' is a {type(value).__name__}, not a summary's")
    status, seconds = summary.get("status"), summary.get("wall_seconds")
    if status is not None and status not in STATUSES:
        raise NnbackError(f"{path}: unknown status {status[:40]!r}")
    if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
        raise NnbackError(f"{path}: 'wall_seconds' is {seconds}")
    return summary


def _metric_records(path: Path) -> list[dict]:
    """The records of ``metrics.jsonl``: those with integer ``epoch``/``step`` and only
    finite numbers (or null) as values; others are left out with a warning."""
    from nnback.runfolder.jsonl import read_jsonl

    records = read_jsonl(path, missing_ok=True)
    kept = [r for r in records if all(r.get(k) is None or is_int(r[k]) for k in ("epoch", "step"))
            and all(v is None or is_number(v) for v in r.values())]
    if len(kept) < len(records):
        logger.warning("warning: %s: %d records not in the metrics format left out", one_line(str(path)),
                       len(records) - len(kept))
    return kept


def load_run(path: str | Path) -> Run:
    """Read the run folder ``path``.

    Raises:
        NnbackError: not a run folder (no ``config.yaml``), or an unreadable or
            malformed file.
    """
    path = Path(path)
    config_path = path / "config.yaml"
    if not config_path.is_file():
        raise NnbackError(f"{path}: not a run folder (no config.yaml)")
    config = read_saved_config(config_path)
    metrics = _metric_records(path / "metrics.jsonl")
    return Run(path, config, _read_summary(path / "summary.json"), metrics)


def find_runs(root: str | Path) -> list[Path]:
    """Every run folder at or below ``root``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise NnbackError(f"{root}: no such folder")
    return sorted(p.parent for p in root.rglob("config.yaml"))


# Sections first in a table of settings: what one tunes most, then what one changes less.
SECTION_ORDER = ("optimizer", "schedule", "model", "loss", "train", "data", "seed")
COLLAPSE = 3  # more differing keys than this inside one list: show the whole list instead
MAX_SETTINGS = 6  # differing settings shown per experiment in the table (csv and json keep all)
MAX_CELL = 20  # characters of a setting's value in the table
MAX_LABEL_SETTINGS = 3  # settings named in a plot legend entry
MAX_LABEL_VALUE = 16  # characters of a value in a plot legend entry


def _list_prefix(key: str) -> str | None:
    """``model.layers`` for ``model.layers[2].units``; None for a key outside lists."""
    return key[:key.index("[")] if "[" in key else None


def _subtree(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def differing_settings(configs: list[dict]) -> list[str]:
    """The settings in which ``configs`` differ, most tuned first.

    Like ``differing_keys``, but a list in which more than ``COLLAPSE`` keys differ, or
    whose length differs, counts as one setting named by its path (``model.layers``).
    """
    keys = differing_keys(configs)
    by_list: dict[str, list[str]] = {}
    for key in keys:
        if (prefix := _list_prefix(key)) is not None:
            by_list.setdefault(prefix, []).append(key)
    collapsed = {prefix for prefix, inside in by_list.items()
                 if len(inside) > COLLAPSE or len({len(_subtree(c, prefix) or []) for c in configs}) > 1}
    settings = list(dict.fromkeys(_list_prefix(k) if _list_prefix(k) in collapsed else k for k in keys))
    rank = {section: i for i, section in enumerate(SECTION_ORDER)}
    return sorted(settings, key=lambda k: (rank.get(k.split(".")[0].split("[")[0], len(rank)), k))


def setting_value(config: dict, flat: dict, setting: str):
    """The value of a setting: a flattened key, or a collapsed list."""
    return flat[setting] if setting in flat else _subtree(config, setting)


def short_names(keys: list[str], taken=()) -> list[str]:
    """The shortest dotted suffix of each key that no other key ends with:
    ``optimizer.lr`` -> ``lr``, unless ``schedule.lr`` is also there; a ``type`` keeps
    its section (``schedule.type``). ``taken``: names already used by other columns
    (``train.epochs`` stays whole beside the ``epochs`` a run trained)."""
    parts = [k.split(".") for k in keys]
    names = []
    for key, split in zip(keys, parts, strict=True):
        for n in range(2 if split[-1] == "type" else 1, len(split) + 1):
            suffix = ".".join(split[-n:])
            if suffix not in taken and sum(1 for k in keys if k == suffix or k.endswith("." + suffix)) == 1:
                names.append(suffix)
                break
        else:
            names.append(key)
    return names


def abbreviate(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters: paths keep their end, anything else its start."""
    if len(text) <= limit:
        return text
    if "/" in text:
        return "…" + text[-(limit - 1):]
    return text[:limit - 1] + "…"


def _compact(value) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(map(_compact, value)) + "]"
    if isinstance(value, dict):
        rest = ", ".join(f"{k}={_compact(v)}" for k, v in value.items() if k != "type")
        if "type" in value:
            return f"{value['type']}({rest})" if rest else str(value["type"])
        return "{" + rest + "}"
    return str(value)


def value_text(value) -> str:
    """A setting's value in a few characters: ``0.1``, ``true``, ``[128, 64]``,
    ``[linear(units=64), relu]``; ``-`` when the config does not have it."""
    return "-" if value is None else _compact(value)


def experiments(runs: list[Run]) -> dict[str, list[Run]]:
    """The runs grouped by experiment name, in order of first appearance."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.name, []).append(run)
    return groups


def run_labels(runs: list[Run]) -> list[str]:
    """A legend label per run: its experiment name and the settings in which it differs from
    the other runs of the same experiment (at most ``MAX_LABEL_SETTINGS``, values shortened).

    Runs with the same name and config are told apart by their folder name.
    """
    labels = {}
    for name, group in experiments(runs).items():
        settings = differing_settings([r.config for r in group])
        shown = settings[:MAX_LABEL_SETTINGS]
        more = f", +{len(settings) - len(shown)} more" if len(settings) > len(shown) else ""
        for run in group:
            flat = flatten(run.config)
            values = [value_text(setting_value(run.config, flat, key)) for key in shown]
            parts = [f"{short}={abbreviate(value, MAX_LABEL_VALUE)}"
                     for short, value in zip(short_names(settings), values, strict=False)]
            labels[id(run)] = name + (f" ({', '.join(parts)}{more})" if parts else "")
    out = [labels[id(run)] for run in runs]
    if len(set(out)) < len(out):
        out = [f"{label} [{run.path.name}]" for label, run in zip(out, runs, strict=True)]
    return out


def best_of(metrics: list[dict], metric: str) -> tuple[float | None, int | None]:
    """Best value of ``metric`` over the evaluation records, and its epoch."""
    values = [(r[metric], r.get("epoch")) for r in metrics
              if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
    if not values:
        return None, None
    pick = max if higher_is_better(metric) else min
    return pick(values, key=lambda v: v[0])


def _primary_metric(runs: list[Run]) -> str:
    """The validation metric to rank by: the shared early-stopping metric, else accuracy."""
    chosen = {next(iter(r.summary.get("best") or {}), None) for r in runs}
    if len(chosen) == 1 and None not in chosen:
        return chosen.pop()
    if any("val_accuracy" in m for r in runs for m in r.metrics):
        return "val_accuracy"
    return "val_loss"


def _group_rows(root: Path, runs: list[Run]) -> tuple[list[str], list[dict]]:
    """The settings that differ within one experiment's runs, and a row per run."""
    settings = differing_settings([r.config for r in runs])
    primary = _primary_metric(runs)
    classified = any("val_accuracy" in m for r in runs for m in r.metrics)
    shown = ["val_loss", "val_accuracy"] if classified else ["val_loss"]
    shown = [m for m in shown if m != primary] + [primary]  # the epoch column follows its metric
    tested = any("test_accuracy" in (r.summary.get("final") or {}) for r in runs)
    test = "test_accuracy" if tested else "test_loss"
    rows = []
    for run in runs:
        flat = flatten(run.config)
        last = run.metrics[-1] if run.metrics else {}
        row = {"run": str(run.path.relative_to(root)), "name": run.name, "status": run.status}
        row.update((k, setting_value(run.config, flat, k)) for k in settings)
        row.update((f"best_{m}", best_of(run.metrics, m)[0]) for m in shown)
        row["best_epoch"] = best_of(run.metrics, primary)[1]
        row[test] = (run.summary.get("final") or {}).get(test)
        row["epochs"] = run.summary.get("epochs", last.get("epoch"))
        row["seconds"] = run.summary.get("wall_seconds", last.get("seconds"))
        rows.append(row)
    return settings, rows


def _statuses(status: str | None) -> list[str] | None:
    if not status:
        return None
    wanted = [s.strip() for s in status.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown:
        raise NnbackError(f"--status {', '.join(unknown)}: choose from {', '.join(STATUSES)}")
    return wanted


def run_groups(root: str | Path, status: str | None = None) -> list[tuple[str, list[str], list[dict]]]:
    """The runs under ``root`` by experiment: ``(name, settings, rows)`` per experiment.

    ``settings`` are the settings in which that experiment's runs differ (lists whose
    contents differ much as one setting, most tuned first); each row holds run, name,
    status, those settings, the best validation loss (and accuracy, for
    classification), the epoch of the best value of the ranking metric (the shared
    early-stopping metric, else accuracy, else loss; its column comes just before),
    the test metric, epochs and seconds. ``status`` keeps only runs with one of these
    statuses (comma-separated), before the settings are compared.
    """
    root = Path(root)
    wanted = _statuses(status)
    runs = [r for r in _readable_runs(root) if wanted is None or r.status in wanted]
    return [(name, *_group_rows(root, group)) for name, group in experiments(runs).items()]


def _readable_runs(root: Path) -> list[Run]:
    """The runs under ``root``; a run folder that cannot be read (a malformed config.yaml
    or summary.json, a FIFO in place of a file) is left out with a warning."""
    runs = []
    for folder in find_runs(root):
        try:
            runs.append(load_run(folder))
        except NnbackError as exc:
            logger.warning("warning: %s (run left out)", str(exc).splitlines()[0])
    return runs


def _sort_column(groups, key: str) -> dict[int, str]:
    """Per experiment, the column ``--sort key`` names: a row key, ``best_<key>``, or a
    setting's short name."""
    found = {}
    for i, (_, settings, rows) in enumerate(groups):
        aliases = dict(zip(short_names(settings, taken=rows[0]), settings, strict=True))
        for candidate in (key, f"best_{key}"):
            if aliases.get(candidate, candidate) in rows[0]:
                found[i] = aliases.get(candidate, candidate)
                break
    if not found:
        names = dict.fromkeys(c for _, _, rows in groups for c in rows[0])
        raise NnbackError(f"--sort {key}: no such column; choose one of {', '.join(names)}")
    return found


def _sorted(rows: list[dict], column: str) -> list[dict]:
    present = [r for r in rows if r.get(column) is not None]
    missing = [r for r in rows if r.get(column) is None]
    descending = higher_is_better(column)
    try:
        present.sort(key=lambda r: r[column], reverse=descending)
    except TypeError:
        present.sort(key=lambda r: json.dumps(r[column]), reverse=descending)
    return present + missing


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "seconds":
        return duration(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value) if isinstance(value, (str, int)) else json.dumps(value)


def _block(root: Path, name: str, settings: list[str], rows: list[dict]) -> str:
    """One experiment's table: its runs with the settings that differ (shortened) and results."""
    folders = [root / r["run"] for r in rows]
    common = Path(os.path.commonpath(folders)) if len(folders) > 1 else folders[0].parent
    shown = settings[:MAX_SETTINGS]
    results = [k for k in rows[0] if k not in ("run", "name", "status") and k not in settings]
    headers = ["run", "status", *short_names(settings, taken=results)[:len(shown)], *results]
    table = [[str(folder.relative_to(common)), r["status"],
              *(abbreviate(value_text(r[k]), MAX_CELL) for k in shown),
              *(_cell(k, r[k]) for k in results)] for folder, r in zip(folders, rows, strict=True)]
    runs = f"{len(rows)} run{'s' if len(rows) > 1 else ''}"
    lines = [one_line(f"{name}: {runs} in {common}"), format_table(headers, table)]
    if len(settings) > len(shown):
        lines.append(f"({len(settings) - len(shown)} more differing settings not shown: "
                     f"{abbreviate(', '.join(settings[len(shown):]), 80)}; --format json lists them all)")
    return "\n".join(lines)


def runs_table(root: str | Path = "runs", sort: str | None = None, status: str | None = None,
               fmt: str = "table") -> str:
    """The runs under ``root`` as text: ``nnback runs``.

    The table has a block per experiment name, with the settings that differ within it
    (at most ``MAX_SETTINGS``, values shortened to ``MAX_CELL`` characters); csv and json
    have a row per run, all settings, whole values.

    Args:
        root: folder searched recursively for run folders.
        sort: column to sort by within each experiment (``val_loss`` also finds
            ``best_val_loss``, ``lr`` finds ``optimizer.lr``); accuracy columns sort best
            first, everything else ascending; missing values last.
        status: keep only runs with one of these statuses (comma-separated).
        fmt: ``table`` (aligned text), ``csv`` or ``json``.

    Raises:
        NnbackError: unknown format, status or sort column; no such folder.
    """
    if fmt not in FORMATS:
        raise NnbackError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    groups = run_groups(root, status)
    if sort and groups:
        columns = _sort_column(groups, sort)
        groups = [(name, settings, _sorted(rows, columns[i]) if i in columns else rows)
                  for i, (name, settings, rows) in enumerate(groups)]
    rows = [row for _, _, group in groups for row in group]
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if not rows:
        return f"no runs under {root}" if fmt == "table" else ""
    if fmt == "table":
        return "\n\n".join(_block(Path(root), *group) for group in groups)
    settings = list(dict.fromkeys(k for _, keys, _ in groups for k in keys))
    results = dict.fromkeys(k for r in rows for k in r if k not in settings)
    fixed = ["run", "name", "status"]
    headers = [*fixed, *settings, *(k for k in results if k not in fixed)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=headers, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()}
                     for r in rows)
    return out.getvalue().rstrip("\n")
