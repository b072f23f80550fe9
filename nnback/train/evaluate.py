"""Loss and accuracy of a model on a data split, in evaluation mode."""

from __future__ import annotations

import numpy as np

from nnback.build import predicted_classes

# The metrics ``evaluate`` returns, and whether a larger value is better.
HIGHER_IS_BETTER = {"loss": False, "accuracy": True}


def higher_is_better(name: str) -> bool:
    """Whether larger values of a metric are better, by its last word: ``val_accuracy``,
    ``best_val_loss``, ``test_accuracy``. False for a name that is no metric (``epochs``)."""
    return HIGHER_IS_BETTER.get(name.rsplit("_", 1)[-1], False)


def evaluate(model, loss_fn, split, classification: bool, batch_size: int) -> dict:
    """Mean loss (and accuracy for classification) over ``split``.

    Runs in batches of ``batch_size`` rows (``nnback.memory.evaluation_rows``) so
    memory stays bounded; the loss is weighted by batch size so the result equals the
    loss over the whole split at once (to float rounding).

    Returns:
        ``{"loss": float, "accuracy": float}`` (accuracy only for classification).
    """
    n = len(split)
    loss_total, correct = 0.0, 0
    for xb, yb in split.batches(batch_size):
        scores = model.forward(xb, training=False)
        loss, _ = loss_fn(scores, yb)
        loss_total += loss * len(yb)
        if classification:
            correct += int(np.count_nonzero(predicted_classes(scores) == yb.reshape(-1)))
    metrics = {"loss": loss_total / n}
    if classification:
        metrics["accuracy"] = correct / n
    return metrics
