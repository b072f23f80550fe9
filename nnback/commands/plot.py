"""``nnback plot RUN [RUN...]``: one PNG with the curves of one run or several overlaid.

Six panels: training and validation loss, validation accuracy and learning rate per
epoch (per step when evaluations are every N steps); and, from ``diagnostics.jsonl``,
the gradient norm and the update/weight ratio of every weight matrix over the steps,
and the gradient each layer passes back (last record) as a profile through depth.
matplotlib (the ``plot`` extra) is imported only here, and no pyplot global state is
touched.
"""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

from nnback.commands.runs import Run, load_run, run_labels
from nnback.errors import NnbackError
from nnback.runfolder.atomic import atomic_write
from nnback.runfolder.preflight import check_output_file
from nnback.runfolder.sweep_folder import is_sweep_folder, trial_folders
from nnback.train.diagnostics import HEALTHY_RATIO, read_records

LINESTYLES = ("-", "--", ":", "-.")
MARKED_POINTS = 60  # series this short get a marker on every point
# Bounds on the image, so an absurd size fails at once instead of exhausting memory.
MAX_DPI = 2400
MAX_SIDE_PIXELS = 32768
MAX_PIXELS = 100_000_000


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise NnbackError("plotting needs matplotlib: pip install 'nnback[plot]'") from None
    return Figure


def _diagnostics(run: Run) -> list[dict]:
    return read_records(run.path / "diagnostics.jsonl", missing_ok=True)


def _x_key(runs: list[Run]) -> str:
    """``epoch`` when every run evaluates once per epoch, else ``step``."""
    for run in runs:
        epochs = [r.get("epoch") for r in run.metrics]
        if any(b is None or a is None or b <= a for a, b in pairwise(epochs)):
            return "step"
    return "epoch"


def _series(records: list[dict], x: str, y, log: bool = False) -> tuple[list, list]:
    """(xs, ys) of the records where ``y`` (a key or a function of a record) is a number.

    With ``log``, values <= 0 become NaN: a gap in the line, not a plunge off the axis.
    """
    get = y if callable(y) else (lambda r: r.get(y))
    points = [(r.get(x), get(r)) for r in records]
    points = [(a, b if b > 0 or not log else math.nan) for a, b in points
              if a is not None and isinstance(b, (int, float)) and math.isfinite(b)]
    return [a for a, _ in points], [b for _, b in points]


def _plain_log_labels(ax, low: float, high: float) -> None:
    """Log y ticks labelled 0.2, 0.5, 1, 2 (1, 2, 5 per decade when the range is short)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    subs = (1.0, 2.0, 5.0) if math.log10(high / low) <= 2.5 else (1.0,)
    ax.yaxis.set_major_locator(LogLocator(subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _line(ax, series: tuple[list, list], **style) -> None:
    """Plot one series; with few points each is marked, so a lone point still shows."""
    xs, ys = series
    shown = sum(1 for y in ys if not math.isnan(y))
    ax.plot(xs, ys, marker="." if shown <= MARKED_POINTS else None, **style)


def _log_if_spread(ax, factor: float = 10.0) -> None:
    """Log y scale when all plotted values are positive and span more than ``factor``."""
    ys = [y for line in ax.get_lines() for y in line.get_ydata()]
    if ys and min(ys) > 0 and max(ys) / min(ys) > factor:
        ax.set_yscale("log")
        _plain_log_labels(ax, min(ys), max(ys))


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4", wrap=True)


def _epoch_panels(axes, runs, colors, x):
    loss, acc, lr = axes
    for run, color in zip(runs, colors, strict=True):
        _line(loss, _series(run.metrics, x, "train_loss"), color=color)
        _line(loss, _series(run.metrics, x, "val_loss"), color=color, ls="--")
        if any("val_accuracy" in r for r in run.metrics):
            _line(acc, _series(run.metrics, x, "val_accuracy"), color=color)
        _line(lr, _series(run.metrics, x, "lr"), color=color)
    loss.set(title="Loss", xlabel=x, ylabel="loss")
    _log_if_spread(loss)
    if loss.get_lines():
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color="0.2", ls=ls) for ls in ("-", "--")]
        loss.legend(handles, ["train", "validation"], fontsize="small")
    acc.set(title="Validation accuracy", xlabel=x, ylabel="accuracy")
    if not acc.get_lines():
        _empty(acc, "no accuracy (not a classification run)")
    lr.set(title="Learning rate", xlabel=x, ylabel="learning rate")
    _log_if_spread(lr, factor=100.0)
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _matrix_names(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(n for r in records for n, s in r["params"].items() if s.get("matrix")))


def _param_metric(name: str, metric: str):
    """A function of a diagnostics record: ``metric`` of parameter ``name`` (None if absent)."""
    return lambda record: record["params"].get(name, {}).get(metric)


def _param_style(i: int, n: int, color, several: bool, cmap) -> dict:
    """One run: a colour per parameter. Several runs: the run's colour, a style per parameter."""
    if several:
        return {"color": color, "ls": LINESTYLES[i % len(LINESTYLES)]}
    return {"color": cmap(i / max(n - 1, 1) * 0.85)}


def _gradient_panels(axes, runs, colors, diags, cmap):
    grad, ratio, depth = axes
    several = len(runs) > 1
    names = list(dict.fromkeys(n for d in diags for n in _matrix_names(d)))
    for color, records in zip(colors, diags, strict=True):
        for i, name in enumerate(names):
            style = _param_style(i, len(names), color, several, cmap)
            for ax, metric in ((grad, "grad_norm"), (ratio, "update_ratio")):
                _line(ax, _series(records, "step", _param_metric(name, metric), log=True), **style)
        if records:
            layers = records[-1]["layers"]
            depth.plot(*_series(layers, "layer", "dx_norm", True), color=color, marker="o")
            depth.set_xticks(range(len(layers)), [f"{layer['layer']} {layer['type']}" for layer in layers],
                             rotation=30, ha="right", fontsize="small")
    grad.set(title="Gradient norm per weight matrix", xlabel="step", ylabel="||dW||")
    ratio.set(title="Update / weight ratio", xlabel="step", ylabel="||ΔW|| / ||W||")
    depth.set(title="Gradient through depth (last record)", xlabel="layer", ylabel="||dL/dx|| passed back")
    if not names:
        for ax in axes:
            _empty(ax, "no diagnostics.jsonl\n(set train.diagnostics: {every: 100})")
        return
    ratio.axhspan(HEALTHY_RATIO / 10, HEALTHY_RATIO * 10, color="tab:green", alpha=0.12, lw=0)
    ratio.axhline(HEALTHY_RATIO, color="tab:green", lw=0.8)
    for ax in (grad, ratio, depth):
        ax.set_yscale("log")
    if several:  # colours tell the runs apart; the legend shows each parameter's line style
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color="0.2", ls=LINESTYLES[i % len(LINESTYLES)]) for i in range(len(names))]
    else:
        handles = grad.get_lines()[: len(names)]
    for ax in (grad, ratio):
        ax.legend(handles, names, fontsize="x-small", ncols=2 if len(names) > 4 else 1)


def make_figure(runs: list[Run], width: float = 15.0, height: float = 8.5, dpi: int = 100):
    """A matplotlib Figure of ``runs`` (not saved); axes in reading order, 2 x 3.

    Raises:
        NnbackError: matplotlib is not installed.
    """
    Figure = _figure_class()
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    colors = [colormaps["tab10"](i % 10) for i in range(len(runs))]
    labels = run_labels(runs)
    _epoch_panels(axes[:3], runs, colors, _x_key(runs))
    diags = [_diagnostics(r) for r in runs]
    _gradient_panels(axes[3:], runs, colors, diags, colormaps["viridis"])
    for ax in axes:
        ax.grid(True, alpha=0.3)
    proxies = [Line2D([], [], color=c, lw=2) for c in colors]
    fig.legend(proxies, labels, loc="outside upper center", ncols=min(len(runs), 3), frameon=False)
    return fig


def plot_runs(run_dirs: list[str | Path], out: str | Path = "plot.png", width: float = 15.0,
              height: float = 8.5, dpi: int = 100) -> Path:
    """Write the PNG of ``run_dirs`` to ``out``, ``width`` x ``height`` inches at ``dpi``.

    Raises:
        NnbackError: matplotlib missing, a folder that is not a run, an ``out`` in a missing folder.
        RunIOError: ``out`` cannot be written.

    A sweep folder stands for all its trials.
    """
    if not run_dirs:
        raise NnbackError("plot: give at least one run folder")
    if not 1 <= dpi <= MAX_DPI:
        raise NnbackError(f"plot: --dpi {dpi}: must be from 1 to {MAX_DPI}")
    for option, inches in (("--width", width), ("--height", height)):
        if not (math.isfinite(inches) and 1 <= inches * dpi <= MAX_SIDE_PIXELS):
            raise NnbackError(f"plot: {option} {inches:g}: must be a finite size in inches of 1 to "
                              f"{MAX_SIDE_PIXELS} pixels at --dpi {dpi}")
    if width * height * dpi * dpi > MAX_PIXELS:
        raise NnbackError(f"plot: {width:g} x {height:g} inches at --dpi {dpi} is "
                          f"{width * height * dpi * dpi / 1e6:.0f} megapixels; at most "
                          f"{MAX_PIXELS // 10**6}: lower --dpi, --width or --height")
    out = Path(out)
    check_output_file(out)
    runs = [load_run(d) for arg in run_dirs
            for d in (trial_folders(arg) if is_sweep_folder(arg) else [arg])]
    fig = make_figure(runs, width, height, dpi)
    atomic_write(out, lambda f: fig.savefig(f, format="png"))
    return out
