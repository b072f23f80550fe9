"""``nnback export``: saved weights as an ONNX model, checked against nnback with ONNX Runtime.

The model is built and checked by ``onnx.checker`` in memory; when ONNX Runtime is
installed (or ``--check`` asks for it) it runs on the run's test split, or on a given
file of raw inputs, and its outputs are compared with nnback's own predictions. Only a
model that passes is written, atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnback.build import loss_targets
from nnback.data import Split, load_data
from nnback.data.inputs import read_raw_inputs
from nnback.data.load import PART_NAMES
from nnback.errors import EXIT_FAILURE, EXIT_OK, DataError, ExportError, NnbackError
from nnback.runfolder.atomic import atomic_write_bytes
from nnback.runfolder.saved_model import Predictor, load
from nnback.train.evaluate import evaluate, predicted_classes

INSTALL_HINT = 'pip install -e ".[onnx]"'
# Largest difference to nnback's outputs that is float32 rounding: for probabilities, and
# for regression values relative to max(1, the largest |value|).
TOLERANCE = 1e-5


@dataclass
class Comparison:
    """ONNX Runtime's outputs against nnback's on the same raw rows.

    Attributes:
        source: where the rows came from ("the test split", a file name).
        rows: N.
        difference: largest absolute difference of probabilities (values for regression).
        magnitude: the largest |value| nnback predicts (regression; 1 for probabilities).
        agree: rows whose predicted class is the same (None for regression).
        near_ties: disagreeing rows whose two classes nnback finds equally likely
            within the tolerance (float32 rounding may pick either).
    """

    source: str
    rows: int
    difference: float
    magnitude: float
    agree: int | None
    near_ties: int

    @property
    def ok(self) -> bool:
        disagree = 0 if self.agree is None else self.rows - self.agree
        return self.difference <= TOLERANCE * max(1.0, self.magnitude) and disagree == self.near_ties

    def line(self, runtime_version: str) -> str:
        if self.agree is None:
            what = f"largest value difference {self.difference:.2g} (largest |value| {self.magnitude:.3g})"
        else:
            what = (f"largest probability difference {self.difference:.2g}, predicted classes "
                    f"agree on {self.agree} of {self.rows} rows")
        return f"checked with onnxruntime {runtime_version} on {self.source} ({self.rows} rows): {what}"


def export_run(run: str | Path, out: str | Path | None = None, opset: int | None = None,
               dtype: str = "float32", check: bool = False, data: str | Path | None = None):
    """Run ``nnback export``: returns (lines to print, exit code).

    Args:
        run: run folder, model.npz or checkpoint.
        out: the .onnx file; default ``RUN/model.onnx``, or the weights file with ``.onnx``.
        opset: ONNX operator set (default ``onnx_graph.DEFAULT_OPSET``).
        dtype: "float32" or "float64", the graph's weights and arithmetic.
        check: require ONNX Runtime and the comparison (done anyway when it is installed).
        data: a file of raw inputs (as for ``nnback predict``) to compare on instead of the
            run's test split.

    Raises:
        NnbackError: onnx (or, with ``check`` or ``data``, onnxruntime) missing, unreadable weights,
            an unsupported layer or option, unreadable data; nothing is written.
    """
    _require("onnx")
    runtime = _require("onnxruntime") if check or data is not None else _optional("onnxruntime")
    from nnback.onnx_graph import DEFAULT_OPSET, add_metadata, build_onnx

    predictor = load(run)
    opset = DEFAULT_OPSET if opset is None else opset
    model = build_onnx(predictor, opset, dtype)
    target = Path(out) if out is not None else _default_target(Path(run))
    lines = []
    try:
        parts = _raw_splits(predictor)
    except DataError as exc:
        if runtime is not None and data is None:
            raise
        parts = {}
        lines.append(f"note: no test metric in the metadata: {exc}")
    if "test" in parts:
        add_metadata(model, {f"test_{k}": f"{v:.6g}" for k, v in _metrics(predictor, *parts["test"]).items()})
    if runtime is None:
        lines.append(f"not checked: onnxruntime is not installed ({INSTALL_HINT})")
    else:
        comparison = compare(predictor, _session(runtime, model), *_rows_to_compare(predictor, parts, data))
        lines.append(comparison.line(runtime.__version__))
        if not comparison.ok:
            lines.append(f"error: ONNX Runtime and nnback disagree beyond float32 rounding "
                         f"(tolerance {TOLERANCE:g}); {target} not written")
            return lines, EXIT_FAILURE
    atomic_write_bytes(target, model.SerializeToString())
    kb = target.stat().st_size / 1024
    lines.insert(0, f"wrote {target} ({kb:,.1f} kB, opset {opset}, {dtype}): input 'input' "
                    f"(N, {predictor.data.n_features}) float32, outputs {_outputs_text(model)}")
    return lines, EXIT_OK


def compare(predictor: Predictor, session, X: np.ndarray, source: str) -> Comparison:
    """Run ``session`` and nnback on the raw rows X (N, D); compare their outputs."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    if len(X) == 0:
        raise DataError(f"{source}: no rows to compare on")
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input": X}), strict=True))
    if "values" in got:
        reference = predictor.scores(X)
        magnitude = float(np.abs(reference).max())
        return Comparison(source, len(X), _largest(got["values"], reference), magnitude, None, 0)
    proba = predictor.predict_proba(X)
    labels = predicted_classes(predictor.scores(X))
    rows = np.flatnonzero(got["label"] != labels)
    gaps = np.abs(proba[rows, labels[rows]] - proba[rows, got["label"][rows]])
    return Comparison(source, len(X), _largest(got["probabilities"], proba), 1.0,
                      len(X) - len(rows), int(np.count_nonzero(gaps <= TOLERANCE)))


def _rows_to_compare(predictor: Predictor, parts: dict, data: str | Path | None) -> tuple[np.ndarray, str]:
    """Raw rows (N, D) and where they come from: the ``data`` file, else the test split
    (the validation or training split when the run has none)."""
    if data is not None:
        return read_raw_inputs(Path(data), predictor.data), str(data)
    name = next(name for name in PART_NAMES[::-1] if name in parts)
    return parts[name][0], f"the {name} split"


def _largest(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max())


def _raw_splits(predictor: Predictor) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The run's data splits as raw float32 rows (N, D) and encoded labels, by split name.

    The data is read as in training with the preprocessing left out: the same rows and
    classes, values cast to float32 as ``nnback predict`` reads them.
    """
    cfg = predictor.exp.data
    raw = cfg.model_copy(update={"preprocess": type(cfg.preprocess)()})
    bundle = load_data(raw, seed=predictor.exp.seed, base_dir=Path.cwd())
    parts = {}
    for name in PART_NAMES:
        split = getattr(bundle, name)
        if split is not None and len(split):
            X = np.concatenate([xb for xb, _ in split.batches(predictor.eval_rows)])
            parts[name] = (X, split.y)
    return parts


def _metrics(predictor: Predictor, X: np.ndarray, y: np.ndarray) -> dict:
    """nnback's loss (and accuracy) on raw rows X with labels y, as ``nnback eval`` reports them."""
    split = Split(predictor.preprocessor.transform(X), loss_targets(predictor.exp, y, predictor.model.dtype))
    return evaluate(predictor.model, predictor.loss_fn, split, predictor.data.task == "classification",
                    predictor.eval_rows)


def _session(runtime, model):
    """An ONNX Runtime CPU session for ``model``; ExportError if this runtime cannot run it."""
    options = runtime.SessionOptions()
    options.log_severity_level = 3
    state = runtime.capi.onnxruntime_pybind11_state  # the runtime's error types
    try:
        return runtime.InferenceSession(model.SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])
    except (state.Fail, state.InvalidGraph, state.NotImplemented, state.InvalidArgument,
            state.InvalidProtobuf) as exc:  # e.g. an opset newer than this runtime knows
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"onnxruntime {runtime.__version__} cannot run the exported model: "
                          f"{reason}") from None


def _outputs_text(model) -> str:
    shapes = {"probabilities": "(N, C) float32", "label": "(N,) int64", "values": "(N, T) float32"}
    return ", ".join(f"'{o.name}' {shapes[o.name]}" for o in model.graph.output)


def _default_target(run: Path) -> Path:
    return run / "model.onnx" if run.is_dir() else run.with_suffix(".onnx")


def _require(module: str):
    """Import ``module``; a missing one is a one-line NnbackError with the install command."""
    imported = _optional(module)
    if imported is None:
        raise NnbackError(f"export needs the {module} package: {INSTALL_HINT}")
    return imported


def _optional(module: str):
    """Import ``module``, or None when it is not installed."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        return None
