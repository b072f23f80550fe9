"""Gradient-flow diagnostics recorded during training, and the warnings drawn from them.

Every ``every`` steps the trainer runs the step with traces and hands them here; one
JSON record is appended to ``diagnostics.jsonl``::

    {"step": 300, "epoch": 2, "lr": 0.1,
     "params": {"0.W": {"weight_norm": 9.1, "grad_norm": 0.42, "update_ratio": 0.0011,
                        "matrix": true}, ...},
     "layers": [{"layer": 0, "type": "Linear", "dx_norm": 0.03},
                {"layer": 1, "type": "ReLU", "dx_norm": 0.05, "mean": 0.4, "std": 0.6,
                 "dead": 0.02}, ...],
     "depth_ratio": 0.8}

Definitions (all on the mini-batch of the recorded step; norms are Frobenius norms):

- ``weight_norm``: ||W|| after the update; ``grad_norm``: ||dW|| used by the update;
  ``update_ratio``: ||W_after - W_before|| / ||W_before|| (None when ||W_before|| = 0).
  Around 1e-3 is the usual healthy value. ``matrix`` marks weight matrices and
  convolution kernels (2-D and 4-D), the only parameters whose ratio is checked for warnings.
- ``dx_norm``: ||dL/dx||, the gradient a layer passes back to its input, (N, D_in).
- ``mean``, ``std``: of an activation layer's output (its spec's role is
  ``"activation"``) over the batch and units.
- ``dead`` (layers whose spec says ``can_die``: ReLU): fraction of units that output 0
  for every sample of the batch; on feature maps (N, C, H, W) a unit is a channel,
  dead when 0 at every pixel of every sample.
- ``saturated``: fraction of outputs in the flat tails, outside the range the layer's
  spec declares (``saturated_outside``): sigmoid outside [0.01, 0.99], tanh outside
  [-0.99, 0.99].
- ``depth_ratio``: dx_norm of layer 1 (the gradient reaching the first layer's output)
  over dx_norm of the last layer; far below 1 the gradient vanishes through depth, far
  above it explodes. Present for networks of 3 layers or more.

A pattern (see ``Thresholds``) produces a warning only after it holds for ``persist``
consecutive records, and each (kind, place) warns at most once per run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nnback.errors import one_line
from nnback.optim import grad_norm
from nnback.untrusted import is_int, is_number

logger = logging.getLogger(__name__)

HEALTHY_RATIO = 1e-3


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """When a recorded value counts as a problem.

    Attributes:
        ratio_low: update ratios of a weight matrix below this: the layer barely learns.
            Not checked while the learning rate is under a tenth of its peak so far
            (a decaying schedule makes updates small on purpose).
        ratio_high: update ratios above this: steps too large for the weights.
        dead: fraction of dead ReLU units above which a layer is reported.
        saturated: fraction of saturated sigmoid/tanh outputs above which it is reported.
        vanishing: depth_ratio below this: the gradient vanishes through depth.
        exploding: depth_ratio above this: the gradient explodes through depth.
        persist: consecutive records a pattern must hold before it is reported.
    """

    ratio_low: float = 1e-5
    ratio_high: float = 1e-1
    dead: float = 0.5
    saturated: float = 0.25
    vanishing: float = 1e-2
    exploding: float = 1e2
    persist: int = 3


@dataclasses.dataclass
class Problem:
    """One pattern at one place, tracked over the records of a run.

    Attributes:
        kind: ``ratio_low``, ``ratio_high``, ``dead``, ``saturated``, ``vanishing`` or
            ``exploding``.
        where: the parameter (``"0.W"``), the layer (``"layer 1 (ReLU)"``) or ``"network"``.
        first_step: step of the first record showing it.
        records: how many records showed it.
        worst: its most extreme value; ``worst_step`` the step of that record.
        warned_step: step at which it had persisted long enough to warn, or None.
    """

    kind: str
    where: str
    first_step: int
    records: int = 0
    worst: float = 0.0
    worst_step: int = 0
    warned_step: int | None = None

    def message(self, value: float) -> str:
        """One log line for this problem at ``value``."""
        if value == 0 and self.kind == "ratio_low":
            return f"{self.where}: not updated at all, its gradient is zero (dead units above it?)"
        if value == 0 and self.kind == "vanishing":
            return f"{self.where}: no gradient reaches the first layer (dead units above it?)"
        what = {
            "ratio_low": f"update/weight ratio {value:.1e} (healthy is about {HEALTHY_RATIO:.0e}): "
                         "this layer barely learns; the learning rate may be too low",
            "ratio_high": f"update/weight ratio {value:.1e} (healthy is about {HEALTHY_RATIO:.0e}): "
                          "steps are large next to the weights; the learning rate may be too high",
            "dead": f"{value:.0%} of units dead (zero for every sample of the batch)",
            "saturated": f"{value:.0%} of outputs saturated (local gradient below 0.01)",
            "vanishing": f"gradient vanishes through depth: the first layer gets {value:.1e} "
                         "times the gradient the last layer passes back",
            "exploding": f"gradient explodes through depth: the first layer gets {value:.1e} "
                         "times the gradient the last layer passes back",
        }[self.kind]
        return f"{self.where}: {what}"


def _more_extreme(kind: str, a: float, b: float) -> bool:
    """Whether value ``a`` is a worse case of ``kind`` than ``b``."""
    return a < b if kind in ("ratio_low", "vanishing") else a > b


class ProblemTracker:
    """Finds problems in records, one record after another, and decides when to warn.

    Args:
        thresholds: what counts as a problem and how long it must persist.

    Attributes:
        problems: every (kind, where) seen so far -> ``Problem``, in order of appearance.
    """

    def __init__(self, thresholds: Thresholds = Thresholds()):
        self.thresholds = thresholds
        self.problems: dict[tuple[str, str], Problem] = {}
        self._streak: dict[tuple[str, str], int] = {}
        self._lr_peak = 0.0

    def update(self, record: dict) -> list[str]:
        """Take the next record; return the warning lines due now (usually none)."""
        step = record["step"]
        due = []
        found = self.find(record)
        for key in [k for k in self._streak if k not in found]:
            del self._streak[key]
        for key, value in found.items():
            problem = self.problems.get(key)
            if problem is None:
                problem = self.problems[key] = Problem(*key, first_step=step, worst=value, worst_step=step)
            problem.records += 1
            if _more_extreme(problem.kind, value, problem.worst):
                problem.worst, problem.worst_step = value, step
            self._streak[key] = self._streak.get(key, 0) + 1
            if problem.warned_step is None and self._streak[key] >= self.thresholds.persist:
                problem.warned_step = step
                due.append(f"step {step}: {problem.message(value)}")
        return due

    def find(self, record: dict) -> dict[tuple[str, str], float]:
        """The problems one record shows: (kind, where) -> value."""
        t = self.thresholds
        lr = record.get("lr") or 0.0
        self._lr_peak = max(self._lr_peak, lr)
        found = {}
        for name, stats in record["params"].items():
            ratio = stats.get("update_ratio")
            if ratio is None or not stats.get("matrix"):
                continue
            if ratio > t.ratio_high:
                found["ratio_high", name] = ratio
            elif ratio < t.ratio_low and lr >= 0.1 * self._lr_peak:
                found["ratio_low", name] = ratio
        for layer in record["layers"]:
            where = f"layer {layer['layer']} ({layer['type']})"
            if layer.get("dead", 0) > t.dead:
                found["dead", where] = layer["dead"]
            if layer.get("saturated", 0) > t.saturated:
                found["saturated", where] = layer["saturated"]
        depth = record.get("depth_ratio")
        if depth is not None and depth < t.vanishing:
            found["vanishing", "network"] = depth
        elif depth is not None and depth > t.exploding:
            found["exploding", "network"] = depth
        return found


PARAM_METRICS = ("weight_norm", "grad_norm", "update_ratio")
LAYER_METRICS = ("dx_norm", "mean", "std", "dead", "saturated")


def read_records(path: str | Path, missing_ok: bool = False) -> list[dict]:
    """The records of a ``diagnostics.jsonl`` in the format above; records that are not
    (hand-edited, foreign) are left out with one logged warning.

    Raises:
        FileNotFoundError: no such file (without ``missing_ok``).
        NnbackError: not a regular file.
    """
    from nnback.runfolder.jsonl import read_jsonl

    records = read_jsonl(path, missing_ok=missing_ok)
    kept = [r for r in records if _well_formed(r)]
    if len(kept) < len(records):
        logger.warning("warning: %s: %d records not in the diagnostics format left out", one_line(str(path)),
                       len(records) - len(kept))
    return kept


def _well_formed(record: dict) -> bool:
    """True when ``record`` has the fields and types the readers of this format use."""
    params, layers = record.get("params"), record.get("layers")
    return (is_int(record.get("step")) and _is_value(record.get("lr"))
            and _is_value(record.get("depth_ratio"))
            and isinstance(params, dict) and isinstance(layers, list)
            and all(isinstance(stats, dict) and isinstance(stats.get("matrix", False), bool)
                    and all(_is_value(stats.get(k)) for k in PARAM_METRICS) for stats in params.values())
            and all(isinstance(layer, dict) and is_int(layer.get("layer"))
                    and isinstance(layer.get("type"), str)
                    and all(_is_value(layer.get(k)) for k in LAYER_METRICS) for layer in layers))


def _is_value(value) -> bool:
    """A finite number, or None for a statistic that does not apply."""
    return value is None or is_number(value)


def norm(a: np.ndarray) -> float:
    """Frobenius norm of ``a`` (any shape), as a Python float."""
    return grad_norm([a])


def _num(value: float) -> float | None:
    """``value`` to 6 significant digits for the log; None if not finite."""
    value = float(value)
    return float(f"{value:.6g}") if math.isfinite(value) else None


def activation_stats(layer, out: np.ndarray) -> dict:
    """Statistics of an activation layer's output ``out``, (N, D) or (N, C, H, W); {} for
    other layers.

    Returns:
        ``mean`` and ``std``; plus ``dead`` for a layer that can die (ReLU) and
        ``saturated`` for one that saturates (Sigmoid, Tanh), as its spec says.
    """
    spec = getattr(type(layer), "spec", None)
    if spec is None or spec.role != "activation":
        return {}
    # out.mean() and out.std() as numpy computes them (pairwise sums), less the overhead.
    flat = out.reshape(-1)
    mean = np.add.reduce(flat) / flat.size
    deviations = flat - mean
    np.multiply(deviations, deviations, out=deviations)
    stats = {"mean": _num(mean), "std": _num(math.sqrt(np.add.reduce(deviations) / flat.size))}
    if spec.can_die:
        units = out.reshape(len(out), out.shape[1], -1)  # a feature, or a channel's pixels
        stats["dead"] = _num(1 - np.count_nonzero(units.any(axis=(0, 2))) / out.shape[1])
    if spec.saturated_outside is not None:
        low, high = spec.saturated_outside
        stats["saturated"] = _num(np.count_nonzero((out < low) | (out > high)) / out.size)
    return stats


def layer_stats(model, trace_f: list, trace_b: list) -> list[dict]:
    """Per layer: ``dx_norm`` and, for activations, ``activation_stats``.

    Args:
        model: the Sequential the traces come from.
        trace_f: outputs of layers 0..L-1, in order.
        trace_b: the dx each layer returned, from layer L-1 down to layer 0.
    """
    n = len(model.layers)
    rows = []
    for i, (layer, out) in enumerate(zip(model.layers, trace_f, strict=True)):
        row = {"layer": i, "type": type(layer).__name__, "dx_norm": _num(norm(trace_b[n - 1 - i]))}
        row.update(activation_stats(layer, out))
        rows.append(row)
    return rows


def depth_ratio(layers: list[dict]) -> float | None:
    """dx_norm of layer 1 over that of the last layer; None below 3 layers or at 0."""
    if len(layers) < 3:
        return None
    first, last = layers[1]["dx_norm"], layers[-1]["dx_norm"]
    if first is None or not last:
        return None
    return _num(first / last)


def parameter_stats(model, before: np.ndarray) -> dict[str, dict]:
    """Per parameter: weight_norm, grad_norm, update_ratio and whether it is a matrix.

    Args:
        model: after the optimizer step.
        before: a copy of ``model.flat_params`` taken before it.
    """
    after, grads = model.flat_params, model.flat_grads
    change = after - before
    stats, start = {}, 0
    for name, param, _ in model.parameters():  # each a view of the packed arrays, in order
        part = slice(start, start + param.size)
        start = part.stop
        old_norm = norm(before[part])
        stats[name] = {
            "weight_norm": _num(norm(after[part])),
            "grad_norm": _num(norm(grads[part])),
            "update_ratio": _num(norm(change[part]) / old_norm) if old_norm > 0 else None,
            "matrix": param.ndim >= 2,
        }
    return stats


class DiagnosticsRecorder:
    """Records gradient flow every ``every`` steps into a JSON Lines file and warns.

    The trainer, on a step where ``due(step)`` is true, runs forward and backward with
    traces, then calls ``before_update(model)``, steps the optimizer and calls
    ``after_update(...)``. Between due steps it costs nothing.

    Args:
        path: ``diagnostics.jsonl`` in the run folder (appended to).
        every: record every this many steps (>= 1).
        warn: called with one line per warning (e.g. ``console.warn``); None: silent.
        thresholds: what counts as a problem.
    """

    def __init__(self, path: str | Path, every: int = 100, warn: Callable[[str], None] | None = None,
                 thresholds: Thresholds = Thresholds()):
        from nnback.runfolder.jsonl import JsonlWriter

        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self.warn = warn
        self.tracker = ProblemTracker(thresholds)
        self._writer = JsonlWriter(path)
        self._before: np.ndarray | None = None  # the parameters before this step's update

    def due(self, step: int) -> bool:
        """Whether the 1-based ``step`` about to be taken is recorded."""
        return step % self.every == 0

    def before_update(self, model) -> None:
        """Copy the parameters, to measure the update the optimizer is about to make."""
        self._before = model.flat_params.copy()

    def after_update(self, step: int, epoch: int, model, trace_f: list, trace_b: list, lr: float) -> dict:
        """Write the record of this step, warn about persistent problems; return the record.

        Args:
            step: the 1-based step just taken.
            epoch: the 1-based epoch it belongs to.
            model: the Sequential, after the optimizer step.
            trace_f: each layer's output of this step's forward pass, first layer first.
            trace_b: each layer's dx of this step's backward pass, last layer first.
            lr: the learning rate the step used.
        """
        if self._before is None:
            raise RuntimeError("after_update called without before_update on this step")
        layers = layer_stats(model, trace_f, trace_b)
        record = {"step": step, "epoch": epoch, "lr": _num(lr),
                  "params": parameter_stats(model, self._before), "layers": layers,
                  "depth_ratio": depth_ratio(layers)}
        self._before = None
        self._writer.write(record)
        for line in self.tracker.update(record):
            if self.warn is not None:
                self.warn(line)
        return record

    def close(self) -> None:
        self._writer.close()
