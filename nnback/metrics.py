"""Evaluation metrics from predictions and targets (NumPy only).

Classification: the confusion matrix and, per class, precision, recall and F1 with
their macro averages (a class without predictions has precision 0, one without
samples recall 0, as scikit-learn's ``zero_division=0``). Regression: MAE, RMSE and
RMSE and R² averaged over the targets (scikit-learn's ``multioutput="uniform_average"``).
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class).

    y_true, y_pred: class indices, (N,). Returns (C, C) int64, rows true, columns predicted.
    """
    flat = np.asarray(y_true, np.int64) * n_classes + np.asarray(y_pred, np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0."""
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def class_report(confusion: np.ndarray) -> dict:
    """Precision, recall, F1 and support per class, and the macro averages.

    confusion: (C, C) as ``confusion_matrix`` returns it.

    Returns:
        ``{"precision": [C], "recall": [C], "f1": [C], "support": [C],
        "macro_precision": float, "macro_recall": float, "macro_f1": float}``.
    """
    hits = np.diag(confusion).astype(np.float64)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    precision, recall = _ratio(hits, predicted), _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {
        "precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
        "support": support.tolist(),
        "macro_precision": float(precision.mean()), "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
    }


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """MAE, RMSE and R² of predictions.

    y_true, y_pred: (N, T) or (N,). RMSE and R² (1 - SS_res / SS_tot) are computed per
    target and averaged; a constant target has R² 1 when predicted exactly, else 0.

    Returns:
        ``{"mae": float, "rmse": float, "r2": float}``.
    """
    y_true = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    error = np.asarray(y_pred, np.float64).reshape(y_true.shape) - y_true
    ss_res = (error ** 2).sum(axis=0)
    ss_tot = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    r2 = np.where(ss_tot > 0, 1 - _ratio(ss_res, ss_tot), np.where(ss_res == 0, 1.0, 0.0))
    return {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt(ss_res / len(error)).mean()),
            "r2": float(r2.mean())}
