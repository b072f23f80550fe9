"""``nnback eval``: metrics of saved weights on a split of the run's data or a labelled file.

Besides the loss: for classifiers accuracy, per-class precision, recall and F1, their
macro averages and the confusion matrix; for regression MAE, RMSE and R².
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from nnback.build import loss_targets, predicted_classes
from nnback.config.data_schema import FileData
from nnback.data import load_data
from nnback.data.inputs import read_labelled
from nnback.data.load import Split
from nnback.errors import DataError
from nnback.formatting import format_table
from nnback.metrics import class_report, confusion_matrix, regression_report
from nnback.runfolder.saved_model import Predictor, load
from nnback.train.evaluate import evaluate


def eval_saved(path: str | Path, split: str = "test", data_file: str | Path | None = None) -> dict:
    """Metrics of saved weights on a split of the run's own data, or on a labelled file.

    Args:
        path: run folder, model.npz or checkpoint.
        split: "train", "val" or "test" of the data the run was configured with.
        data_file: a labelled .csv/.npz file instead (same columns as in training).

    Returns:
        ``{"<split>_loss": float, ..., "samples": int}`` with the prefix ``data`` for a
        file. Classification adds ``<split>_accuracy``, ``<split>_macro_precision``,
        ``_macro_recall``, ``_macro_f1``, and ``classes`` (names), ``per_class``
        (``{name: {precision, recall, f1, support}}``) and ``confusion_matrix``
        (rows true class, columns predicted). Regression adds ``<split>_mae``,
        ``<split>_rmse`` and ``<split>_r2``.
    """
    predictor = load(path)
    classification = predictor.data.task == "classification"
    if data_file is None:
        bundle = load_data(predictor.exp.data, seed=predictor.exp.seed, base_dir=Path.cwd())
        part = getattr(bundle, split)
        if part is None or len(part) == 0:
            raise DataError(f"{path}: the run's data has no {split} split (see data.split)")
        name = split
    else:
        part = _labelled_file(predictor, Path(data_file))
        name = "data"
    targets = part.y
    part.y = loss_targets(predictor.exp, part.y, predictor.model.dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # a non-finite loss is reported below
        metrics = evaluate(predictor.model, predictor.loss_fn, part, classification, predictor.eval_rows)
    if not math.isfinite(metrics["loss"]):
        raise DataError(f"{data_file or path}: the loss on the {name} rows is {metrics['loss']}: "
                        "some inputs are far outside the range the model was trained on")
    outputs = np.concatenate([predictor.scores(xb, preprocessed=True)
                              for xb, _ in part.batches(predictor.eval_rows)])
    if not classification:
        metrics.update(regression_report(targets, outputs))
        return {**{f"{name}_{k}": v for k, v in metrics.items()}, "samples": len(part)}
    classes = [str(c) for c in predictor.classes]
    confusion = confusion_matrix(np.asarray(targets).reshape(-1), predicted_classes(outputs), len(classes))
    report = class_report(confusion)
    metrics.update((k, report[k]) for k in ("macro_precision", "macro_recall", "macro_f1"))
    per_class = {c: {k: report[k][i] for k in ("precision", "recall", "f1", "support")}
                 for i, c in enumerate(classes)}
    return {**{f"{name}_{k}": v for k, v in metrics.items()}, "samples": len(part), "classes": classes,
            "per_class": per_class, "confusion_matrix": confusion.tolist()}


MATRIX_CLASSES = 30  # larger confusion matrices only in --format json


def eval_report(path: str | Path, split: str = "test", data_file: str | Path | None = None,
                as_json: bool = False) -> str:
    """``eval_saved``'s metrics as text (a line of numbers ``test_loss 0.1234 ...``, then
    for classifiers a per-class table and the confusion matrix), or one JSON object."""
    metrics = eval_saved(path, split, data_file)
    if as_json:
        return json.dumps(metrics)
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    lines = [" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in scalars.items())]
    if "per_class" not in metrics:
        return lines[0]
    rows = [[c, *(f"{m[k]:.4f}" for k in ("precision", "recall", "f1")), str(m["support"])]
            for c, m in metrics["per_class"].items()]
    lines += ["", format_table(["class", "precision", "recall", "f1", "support"], rows), ""]
    classes = metrics["classes"]
    if len(classes) > MATRIX_CLASSES:
        lines.append(f"confusion matrix: {len(classes)} classes, see --format json")
    else:
        lines.append("confusion matrix (rows: true class, columns: predicted)")
        lines.append(format_table(["", *classes], [[c, *map(str, counts)] for c, counts in
                                                   zip(classes, metrics["confusion_matrix"], strict=True)]))
    return "\n".join(lines)


def _labelled_file(predictor: Predictor, path: Path) -> Split:
    """Read a labelled file with the run's file options, labels encoded by the saved classes."""
    saved = predictor.exp.data
    options = {"source": str(path)}
    if path.suffix.lower() == ".csv":
        if not getattr(saved, "target", None):
            keys = getattr(saved, "x_key", "X"), getattr(saved, "y_key", "y")
            raise DataError(f"{path}: the model was not trained on a CSV file, so the label column "
                            f"is unknown; give an .npz file with arrays {keys[0]} and {keys[1]}")
        options.update((k, getattr(saved, k)) for k in ("target", "features") if getattr(saved, k, None))
    else:
        options.update((k, getattr(saved, k)) for k in ("x_key", "y_key") if getattr(saved, k, None))
    try:
        cfg = FileData.model_validate(options)
    except ValidationError as exc:
        reasons = "; ".join(str(e.get("ctx", {}).get("error", e["msg"])) for e in exc.errors())
        raise DataError(f"{path}: cannot read as a labelled file: {reasons}") from None
    return read_labelled(cfg, Path.cwd(), predictor.data, predictor.preprocessor)
