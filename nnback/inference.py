"""``nnback eval`` and ``nnback predict``: saved weights applied to data."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from nnback.build import loss_targets
from nnback.config.data import FileData
from nnback.data import load_data, read_inputs
from nnback.data.dataset import Split
from nnback.data.inputs import read_labelled
from nnback.errors import DataError
from nnback.predictor import Predictor, load
from nnback.atomic import atomic_write_text
from nnback.train.evaluate import evaluate


def eval_saved(path: str | Path, split: str = "test", data_file: str | Path | None = None) -> dict:
    """Metrics of saved weights on a split of the run's own data, or on a labelled file.

    Args:
        path: run folder, model.npz or checkpoint.
        split: "train", "val" or "test" of the data the run was configured with.
        data_file: a labelled .csv/.npz file instead (same columns as in training).

    Returns:
        ``{"<split>_loss": float, "<split>_accuracy": float, "samples": int}``, the
        prefix ``data`` for a file; accuracy only for classification.
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
    part.y = loss_targets(predictor.exp, part.y, predictor.model.dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # a non-finite loss is reported below
        metrics = evaluate(predictor.model, predictor.loss_fn, part, classification)
    if not math.isfinite(metrics["loss"]):
        raise DataError(f"{data_file or path}: the loss on the {name} rows is {metrics['loss']}: "
                        "some inputs are far outside the range the model was trained on")
    out = {f"{name}_{k}": v for k, v in metrics.items()}
    out["samples"] = len(part)
    return out


def _labelled_file(predictor: Predictor, path: Path) -> Split:
    """Read a labelled file with the run's file options, labels encoded by the saved classes."""
    saved = predictor.exp.data
    options = {"source": str(path)}
    if path.suffix.lower() == ".csv":
        options.update((k, getattr(saved, k)) for k in ("target", "features") if getattr(saved, k, None))
    else:
        options.update((k, getattr(saved, k)) for k in ("x_key", "y_key") if getattr(saved, k, None))
    try:
        cfg = FileData.model_validate(options)
    except ValidationError as exc:
        reasons = "; ".join(str(e.get("ctx", {}).get("error", e["msg"])) for e in exc.errors())
        raise DataError(f"{path}: cannot read as a labelled file: {reasons}") from None
    return read_labelled(cfg, Path.cwd(), predictor.data, predictor.preprocessor)


def predict_file(path: str | Path, inputs: str | Path, out: str | Path | None = None) -> str | None:
    """Predict every row of a raw input file (.csv, .npy, .npz, IDX).

    Writes CSV: a ``prediction`` column (class name, or value per target) and, for
    classification with probabilities, one ``p_<class>`` column per class. Returns the
    CSV text when ``out`` is None.
    """
    predictor = load(path)
    X = read_inputs(Path(inputs), predictor.data, predictor.preprocessor)
    try:
        values = predictor.predict(X, preprocessed=True)
        probabilistic = predictor.data.task == "classification" and predictor.probabilistic
        proba = predictor.predict_proba(X, preprocessed=True) if probabilistic else None
    except DataError as exc:
        raise DataError(f"{inputs}: {exc}") from None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if predictor.data.task == "classification":
        header = ["prediction"]
        if probabilistic:
            header += [f"p_{c}" for c in predictor.classes]
        writer.writerow(header)
        for i, label in enumerate(values):
            row = [label] + ([f"{p:.6g}" for p in proba[i]] if probabilistic else [])
            writer.writerow(row)
    else:
        writer.writerow([f"prediction_{j}" for j in range(values.shape[1])] if values.shape[1] > 1
                        else ["prediction"])
        writer.writerows([[f"{v:.6g}" for v in row] for row in values])
    text = buffer.getvalue()
    if out is None:
        return text
    atomic_write_text(out, text)
    return None
