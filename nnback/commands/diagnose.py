"""``nnback diagnose RUN``: the gradient-flow records of a run, summed up in plain words."""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path

from nnback.errors import NnbackError
from nnback.formatting import format_table
from nnback.runfolder.sweep_folder import is_sweep_folder, pick_a_trial
from nnback.train.diagnostics import (
    HEALTHY_RATIO,
    LAYER_METRICS,
    PARAM_METRICS,
    ProblemTracker,
    Thresholds,
    read_records,
)


def _ratio_distance(value: float) -> float:
    """How many decades ``value`` is from the healthy update ratio."""
    return abs(math.log10(value / HEALTHY_RATIO)) if value > 0 else math.inf


# How to pick the worst value of a metric over the run; metrics not listed have none.
WORST = {
    "weight_norm": max,
    "grad_norm": max,
    "update_ratio": lambda values: max(values, key=_ratio_distance),
    "dead": max,
    "saturated": max,
    "std": min,
    "depth_ratio": lambda values: max(values, key=lambda v: abs(math.log10(v)) if v > 0 else math.inf),
}

EXPLANATIONS = {
    "ratio_high": (
        "Each step changes these weights by a large fraction of their size (the update "
        "divided by the weights was above {ratio_high:g}; about 1e-3 is healthy). Training "
        "jumps around instead of settling and may diverge. Lower optimizer.lr, or add "
        "warm-up (schedule.warmup_epochs) or train.grad_clip."
    ),
    "ratio_low": (
        "Each step changes these weights by a tiny fraction of their size (below "
        "{ratio_low:g}; about 1e-3 is healthy), so this layer hardly learns. A ratio of 0 "
        "means no gradient reaches it at all: look first for dead units and for the "
        "gradient vanishing through depth. Otherwise raise optimizer.lr."
    ),
    "dead": (
        "More than {dead:.0%} of this ReLU layer's units output 0 for every sample. A dead "
        "unit passes back no gradient, so it can never recover; the network has lost that "
        "capacity. Usual causes: a learning rate too high (one large step pushes the "
        "units' biases negative) or a poor initialisation. Lower optimizer.lr, use He "
        "initialisation (init: he_normal), or try leaky_relu."
    ),
    "saturated": (
        "More than {saturated:.0%} of this layer's outputs sit in the flat tails of the "
        "curve (sigmoid outside [0.01, 0.99], |tanh| above 0.99), where the local "
        "gradient is almost 0: the gradient dies here on its way back. Standardise the "
        "inputs (data.preprocess: standardize), use Xavier initialisation, add batchnorm "
        "before the activation, or switch to relu."
    ),
    "vanishing": (
        "The gradient shrinks as it flows back: the first layer receives less than "
        "{vanishing:g} times the gradient the last layer passes back, so the early "
        "layers barely learn. Typical of deep stacks of sigmoid/tanh. Use relu-like "
        "activations, He/Xavier initialisation, batchnorm or layernorm, or fewer layers."
    ),
    "exploding": (
        "The gradient grows as it flows back: the first layer receives more than "
        "{exploding:g} times the gradient the last layer passes back, which makes "
        "training unstable. Lower optimizer.lr, set train.grad_clip, use a smaller "
        "initialisation or add normalisation layers."
    ),
}


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.2e}"


def _series_row(label: str, metric: str, points: list[tuple[int, float]]) -> list[str] | None:
    """first, last, worst (and its step) of one metric's (step, value) points."""
    points = [(s, v) for s, v in points if v is not None]
    if not points:
        return None
    pick = WORST.get(metric)
    worst, step = "", ""
    if pick is not None:
        value = pick([v for _, v in points])
        worst, step = _fmt(value), str(next(s for s, v in points if v == value))
    return [label, metric.replace("_", " "), _fmt(points[0][1]), _fmt(points[-1][1]), worst, step]


def summary_rows(records: list[dict]) -> tuple[list[list[str]], list[list[str]]]:
    """Rows (place, metric, first, last, worst, at step) for parameters and for layers."""
    param_rows, layer_rows = [], []
    names = list(dict.fromkeys(n for r in records for n in r["params"]))
    for name in names:
        for metric in PARAM_METRICS:
            points = [(r["step"], r["params"][name].get(metric)) for r in records if name in r["params"]]
            row = _series_row(name, metric, points)
            if row:
                param_rows.append(row)
    last_layers = records[-1]["layers"]
    for i, layer in enumerate(last_layers):
        label = f"{i} {layer['type']}"
        for metric in LAYER_METRICS:
            points = [(r["step"], r["layers"][i].get(metric)) for r in records if len(r["layers"]) > i]
            row = _series_row(label, metric, points)
            if row:
                layer_rows.append(row)
    depth = _series_row("network", "depth_ratio", [(r["step"], r.get("depth_ratio")) for r in records])
    if depth:
        layer_rows.append(depth)
    return param_rows, layer_rows


def warnings_text(records: list[dict], thresholds: Thresholds = Thresholds()) -> list[str]:
    """The problems the records show, explained; patterns too brief to warn about last."""
    tracker = ProblemTracker(thresholds)
    for record in records:
        tracker.update(record)
    words = {k: v.format(**vars(thresholds)) for k, v in EXPLANATIONS.items()}
    warned = [p for p in tracker.problems.values() if p.warned_step is not None]
    brief = [p for p in tracker.problems.values() if p.warned_step is None]
    lines = []
    for p in warned:
        lines += [
            f"- {p.message(p.worst)}",
            f"  first seen at step {p.first_step}, in {p.records} of {len(records)} records, "
            f"worst at step {p.worst_step}.",
            textwrap.fill(words[p.kind], width=88, initial_indent="  ", subsequent_indent="  "),
        ]
    if brief:
        lines.append(f"Seen in fewer than {thresholds.persist} records in a row (not warned about):")
        lines += [f"- step {p.worst_step}: {p.message(p.worst)}" for p in brief]
    return lines


def why_no_records(run_dir: str | Path) -> str:
    """Why a run folder holds no diagnostics records, and what to change."""
    from nnback.commands.runs import load_run

    try:
        run = load_run(run_dir)
    except NnbackError:
        return "diagnostics are recorded by nnback train (train.diagnostics.every, default 100 steps)"
    train = run.config.get("train") or {}
    if train.get("diagnostics", {}) is None:
        return ("diagnostics were off in this run (train.diagnostics: null); remove that line "
                "to record every 100 steps, and train again")
    every = (train.get("diagnostics") or {}).get("every", 100)
    last = run.metrics[-1] if run.metrics else {}
    steps = run.summary.get("steps", last.get("step"))
    if steps is not None and steps < every:
        return (f"diagnostics are recorded every {every} steps (train.diagnostics.every) and the "
                f"run took {steps} steps; set train.diagnostics.every to {max(1, steps // 10)} "
                f"(or another value below {steps}) and train again")
    return f"the first record is written at step {every} (train.diagnostics.every)"


def diagnose_run(run_dir: str | Path, thresholds: Thresholds = Thresholds()) -> str:
    """The report ``nnback diagnose RUN`` prints.

    Raises:
        NnbackError: ``run_dir`` is not a folder; no records in it (no or an empty
            ``diagnostics.jsonl``), saying why.
    """
    if not os.path.isdir(run_dir):
        kind = "a file, not a run folder" if os.path.lexists(run_dir) else "no such run folder"
        raise NnbackError(f"{run_dir}: {kind}")
    if is_sweep_folder(run_dir):
        raise NnbackError(pick_a_trial(run_dir))
    path = Path(run_dir) / "diagnostics.jsonl"
    records = read_records(path) if os.path.lexists(path) else []
    if not records:
        raise NnbackError(f"{run_dir}: no gradient-flow records: {why_no_records(run_dir)}")
    steps = [r["step"] for r in records]
    param_rows, layer_rows = summary_rows(records)
    headers = ["", "metric", "first", "last", "worst", "at step"]
    lines = [
        f"{run_dir}: {len(records)} gradient-flow records, steps {steps[0]}-{steps[-1]}",
        "",
        "Parameters (norms of the weights and of their gradient; update ratio = "
        f"||update|| / ||weights||, healthy about {HEALTHY_RATIO:g})",
        format_table(["parameter", *headers[1:]], param_rows),
        "",
        "Layers (dx norm = gradient each layer passes back; activation output mean, std, "
        "dead and saturated fractions; depth ratio = gradient at the first layer / at the last)",
        format_table(["layer", *headers[1:]], layer_rows),
        "",
    ]
    explained = warnings_text(records, thresholds)
    if explained:
        lines += ["Warnings", *explained]
    else:
        lines.append("No warnings: update ratios in range, no layer mostly dead or saturated, "
                     "and the gradient keeps its size through depth.")
    return "\n".join(lines)
