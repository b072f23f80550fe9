"""``nnback predict``: saved weights applied to raw inputs, written as CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from nnback.data import read_inputs
from nnback.errors import DataError
from nnback.runfolder.atomic import atomic_write_text
from nnback.runfolder.preflight import check_output_file
from nnback.runfolder.saved_model import load


def predict_file(path: str | Path, inputs: str | Path, out: str | Path | None = None) -> str | None:
    """Predict every row of a raw input file (.csv, .npy, .npz, IDX).

    Writes CSV: a ``prediction`` column (class name, or value per target) and, for
    classification with probabilities, one ``p_<class>`` column per class. Returns the
    CSV text when ``out`` is None.
    """
    if out is not None:
        check_output_file(out)
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
