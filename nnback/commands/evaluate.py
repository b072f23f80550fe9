"""``nnback eval``: metrics of saved weights on a split of the run's data or a labelled file."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from nnback.build import loss_targets
from nnback.config.data_schema import FileData
from nnback.data import load_data
from nnback.data.inputs import read_labelled
from nnback.data.load import Split
from nnback.errors import DataError
from nnback.runfolder.saved_model import Predictor, load
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
    metrics = evaluate(predictor.model, predictor.loss_fn, part, classification)
    out = {f"{name}_{k}": v for k, v in metrics.items()}
    out["samples"] = len(part)
    return out


def eval_report(path: str | Path, split: str = "test", data_file: str | Path | None = None,
                as_json: bool = False) -> str:
    """``eval_saved``'s metrics as one line ``test_loss 0.1234 ...``, or one JSON object."""
    metrics = eval_saved(path, split, data_file)
    if as_json:
        return json.dumps(metrics)
    return " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


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
