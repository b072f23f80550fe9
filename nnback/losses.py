"""Losses: ``loss(scores, y) -> (loss, dscores)``, averaged over the batch.

The loss is the only place that divides by the batch size; layers never average.
``dscores`` has the shape and dtype of ``scores``.
"""

import numpy as np

from nnback.layers.activations import sigmoid
from nnback.spec import Formulas, LossSpec, Option


def _as_targets(scores, y):
    """Return y reshaped to ``scores.shape``, e.g. (N,) targets for (N, 1) scores."""
    y = np.asarray(y)
    if y.size != scores.size:
        raise ValueError(f"targets of shape {y.shape} do not match scores of shape {scores.shape}")
    return y.reshape(scores.shape)


def _label_positions(scores, y, rows=None):
    """Flat positions of ``scores[i, y[i]]``, (N,), checking the class labels y.

    Args:
        scores: (N, C).
        y: (N,) integer class labels, each in [0, C).
        rows: ``np.arange(N)``, when the caller keeps one.

    Raises:
        ValueError: naming the expected shape and dtype, or the labels' range.
    """
    y = np.asarray(y)
    n, c = scores.shape
    if y.shape != (n,) or y.dtype.kind not in "iu":  # signed or unsigned ints
        raise ValueError(f"expected integer class labels of shape ({n},), got {y.dtype} {y.shape}")
    try:  # computes [i * C + y[i]] and checks every label in one pass
        return np.ravel_multi_index((np.arange(n) if rows is None else rows, y), (n, c))
    except ValueError:
        raise ValueError(f"class labels must be in [0, {c}), got {y.min()}..{y.max()}") from None


def softmax_cross_entropy(scores, y, label_smoothing=0.0):
    """Softmax cross-entropy as its definition reads: what ``SoftmaxCrossEntropy``
    computes, written plainly (the tests hold the fast class to it).

    ``p = softmax(scores)`` row by row, ``t = (1 - e) * onehot(y) + e / C`` with label
    smoothing e, ``loss = -sum(t * log p) / N`` and ``dscores = (p - t) / N``. The row
    maximum is subtracted from the scores first: softmax does not change, and exp
    cannot overflow.

    Shape:
        scores: (N, C) logits; y: (N,) ints in [0, C); dscores: (N, C).

    Returns:
        (loss as a Python float, dscores).
    """
    targets = _label_positions(scores, y)
    n, c = scores.shape
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    target = np.full(scores.shape, label_smoothing / c, scores.dtype)
    target.reshape(-1)[targets] += 1 - label_smoothing
    loss = -(target * log_probs).sum() / n
    dscores = (np.exp(log_probs) - target) / n
    return float(loss), dscores.astype(scores.dtype, copy=False)


class SoftmaxCrossEntropy:
    """Softmax followed by cross-entropy on integer class labels, as torch.nn.CrossEntropyLoss.

    Computes ``softmax_cross_entropy`` in fewer passes over the scores: the loss from
    ``log p[y] = shifted[y] - log(sum(exp(shifted)))`` without forming log p, and
    dscores in the array exp wrote. Stable for any logits. With label smoothing ``e``
    the target is ``(1 - e) * onehot(y) + e / C``.

    Args:
        label_smoothing: e, 0 <= e < 1.

    Shape:
        scores: (N, C) logits; y: (N,) ints in [0, C); dscores: (N, C).
    """

    spec = LossSpec(
        name="softmax_cross_entropy", doc="Softmax + cross-entropy on class labels.",
        task="classification", probabilities=True,
        options=(Option("label_smoothing", float, 0.0, "Mass spread evenly over all classes.",
                        ge=0, lt=1),),
        formulas=Formulas(
            forward=["p = softmax(scores) = exp(scores - max) / sum over C of exp(scores - max)",
                     "target = (1 - e) * onehot(y) + e / C,  label smoothing e = {loss.label_smoothing}",
                     "L = -mean over N of sum over C of target * log p"],
            passes=["dscores = (p - target) / N"],
        ),
    )

    def __init__(self, label_smoothing=0.0):
        self.spec.check(label_smoothing=label_smoothing)
        self.label_smoothing = label_smoothing
        self._rows, self._ones, self._constants_key = None, None, None

    def __call__(self, scores, y):
        n, c = scores.shape
        e = self.label_smoothing
        rows, ones = self._constants(n, c, scores.dtype)
        targets = _label_positions(scores, y, rows)  # flat positions of [rows, y]
        # The row maximum of a column-major copy: NumPy then compares whole columns
        # with SIMD instead of looping over short rows (several times faster for few classes).
        # (Reductions through the ufuncs: the array methods add a Python layer per call.)
        shifted = np.subtract(scores, np.maximum.reduce(np.asfortranarray(scores), axis=1)[:, None])
        picked = float(np.add.reduce(shifted.take(targets)))
        shifted_sum = float(np.add.reduce(shifted, axis=None)) if e else 0.0
        probs = np.exp(shifted, out=shifted)
        sums = np.matmul(probs, ones)  # row sums, (N,)
        log_sums = float(np.add.reduce(np.log(sums)))  # log_probs = shifted - log(sums), by row
        loss = ((1 - e) * (log_sums - picked) + e * (log_sums - shifted_sum / c)) / n
        sums *= n
        dscores = np.divide(probs, sums[:, None], out=probs)  # softmax / n
        dscores.reshape(-1)[targets] -= (1 - e) / n
        if e:
            dscores -= e / (c * n)
        return loss, dscores

    def _constants(self, n, c, dtype):
        """``arange(n)`` and ones, (c,): kept for the next batch of that shape."""
        key = (n, c, dtype)
        if self._constants_key != key:
            self._rows, self._ones = np.arange(n), np.ones(c, dtype)
            self._constants_key = key
        return self._rows, self._ones

    def __repr__(self):
        return f"SoftmaxCrossEntropy(label_smoothing={self.label_smoothing})"


class MSE:
    """Mean squared error over all elements, as torch.nn.MSELoss.

    Shape:
        scores: (N, D) or (N,); y: same number of elements; dscores: scores' shape.
    """

    spec = LossSpec(
        name="mse", doc="Mean squared error, for regression.", task="regression",
        formulas=Formulas(
            forward=["L = mean over the N * {c} elements of (scores - y)**2"],
            passes=["dscores = 2 * (scores - y) / (N * {c})"],
        ),
    )

    def __call__(self, scores, y):
        diff = scores - _as_targets(scores, y)
        loss = np.mean(diff * diff)
        diff *= 2 / diff.size
        return float(loss), diff.astype(scores.dtype, copy=False)

    def __repr__(self):
        return "MSE()"


class Hinge:
    """Multiclass SVM loss (CS231n): sum over j != y of max(0, s_j - s_y + margin).

    Averaged over the batch.

    Args:
        margin: the required gap between the correct score and every other score (>= 0).

    Shape:
        scores: (N, C); y: (N,) ints in [0, C); dscores: (N, C).
    """

    spec = LossSpec(
        name="hinge", doc="Multiclass SVM loss on class labels.", task="classification",
        options=(Option("margin", float, 1.0, "Gap required between the correct score and "
                        "every other score.", ge=0),),
        formulas=Formulas(
            forward=["margin_j = max(0, scores_j - scores_y + {loss.margin}) for every class j != y",
                     "L = sum of the margins / N"],
            passes=["dscores_j = (margin_j > 0) / N",
                    "dscores_y = -(number of classes j with margin_j > 0) / N"],
        ),
    )

    def __init__(self, margin=1.0):
        self.spec.check(margin=margin)
        self.margin = margin

    def __call__(self, scores, y):
        targets = _label_positions(scores, y)  # flat positions of [rows, y]
        n = scores.shape[0]
        margins = scores - scores.take(targets)[:, None]
        margins += self.margin
        np.maximum(margins, 0, out=margins)
        margins.reshape(-1)[targets] = 0
        loss = margins.sum() / n
        dscores = (margins > 0).astype(scores.dtype)
        dscores.reshape(-1)[targets] = -dscores.sum(axis=1)
        dscores /= n
        return float(loss), dscores

    def __repr__(self):
        return f"Hinge(margin={self.margin})"


class BCEWithLogits:
    """Binary cross-entropy on logits, mean over all elements (torch.nn.BCEWithLogitsLoss).

    Uses ``max(s, 0) - s * y + log(1 + exp(-|s|))``, stable for any logit.

    Shape:
        scores: (N, D) or (N,) logits; y: same number of elements, in [0, 1];
        dscores: scores' shape.
    """

    spec = LossSpec(
        name="bce_with_logits", doc="Binary cross-entropy on one logit, for two classes.",
        task="binary", probabilities=True,
        formulas=Formulas(
            forward=["L = mean over the N * {c} scores s of max(s, 0) - s * y + log(1 + exp(-|s|))"],
            passes=["dscores = (sigmoid(scores) - y) / (N * {c})"],
        ),
    )

    def __call__(self, scores, y):
        y = _as_targets(scores, y)
        losses = np.maximum(scores, 0) - scores * y + np.log1p(np.exp(-np.abs(scores)))
        dscores = sigmoid(scores) - y
        dscores /= scores.size
        return float(losses.mean()), dscores.astype(scores.dtype, copy=False)

    def __repr__(self):
        return "BCEWithLogits()"
