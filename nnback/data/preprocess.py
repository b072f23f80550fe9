"""Per-feature preprocessing, fitted on the training split and saved with the model.

Every kind is one affine map per feature, ``out = (X - shift) * scale``:

- none: shift 0, scale 1 (values only become float32);
- standardize: shift = mean, scale = 1 / std (population std; 1 where std is 0);
- minmax: shift = min, scale = 1 / (max - min) (1 where max == min);
- scale: shift 0, scale = factor.

With ``channels`` (images whose rows hold C equal blocks of pixels, one per channel),
standardize and minmax use one statistic per channel, over all its pixels, repeated
for each pixel: the saved shift and scale still have one entry per feature.

Statistics are accumulated in float64 over bounded chunks of rows, so fitting a
memory-mapped file needs memory independent of its size.
"""

from __future__ import annotations

import numpy as np

from nnback.data.table import chunk_slices, read_rows, usable
from nnback.errors import DataError

KINDS = ("none", "standardize", "minmax", "scale")


class Preprocessor:
    """An affine per-feature map of inputs (N, D) to float32.

    Args:
        kind: one of KINDS.
        factor: the multiplier of kind "scale".
        channels: C, to fit one statistic per image channel; None: per feature.

    Attributes:
        shift, scale: (D,) float32 once fitted.
    """

    def __init__(self, kind: str = "none", factor: float | None = None, channels: int | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown preprocessing {kind!r}; expected one of {KINDS}")
        if (kind == "scale") != (factor is not None):
            raise ValueError("factor is required by kind 'scale' and only by it")
        self.kind = kind
        self.factor = factor
        self.channels = channels
        self.shift: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"Preprocessor({self.kind!r}, n_features={self.n_features})"

    @property
    def n_features(self) -> int | None:
        return None if self.shift is None else len(self.shift)

    def fit(self, X, rows: np.ndarray | None = None) -> Preprocessor:
        """Fit on rows ``rows`` of X (N, D) (all rows if None); X an ndarray or MappedNpy."""
        d = X.shape[1]
        shift, scale = np.zeros(d), np.ones(d)
        if self.kind == "standardize":
            count, mean, m2, _, _ = self._statistics(X, rows)
            std = np.sqrt(m2 / count)
            shift, scale = mean, 1.0 / np.where(std > 0, std, 1.0)
        elif self.kind == "minmax":
            _, _, _, low, high = self._statistics(X, rows)
            span = high - low
            shift, scale = low, 1.0 / np.where(span > 0, span, 1.0)
        elif self.kind == "scale":
            scale = np.full(d, self.factor)
        self.shift, self.scale = shift.astype(np.float32), scale.astype(np.float32)
        return self

    def transform(self, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Preprocess X (N, D) of any numeric dtype into float32 (N, D).

        Args:
            out: optional float32 (N, D) array to write into (may not alias X).

        Raises:
            DataError: X does not have the fitted number of features.
        """
        if self.shift is None:
            raise RuntimeError("Preprocessor.transform called before fit")
        if X.ndim != 2 or X.shape[1] != self.n_features:
            got = X.shape[1] if X.ndim == 2 else f"shape {X.shape}"
            raise DataError(f"input has {got} features; the preprocessing was fitted "
                            f"on {self.n_features}")
        out = np.subtract(X, self.shift, out=out, dtype=np.float32)
        return np.multiply(out, self.scale, out=out)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays to save: "kind" (0-d str), "shift" and "scale" (D,) float32."""
        return {"kind": np.array(self.kind), "shift": self.shift, "scale": self.scale}

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> Preprocessor:
        """Rebuild a fitted Preprocessor from ``state_dict()`` arrays."""
        try:
            kind, shift, scale = str(state["kind"]), np.asarray(state["shift"]), np.asarray(state["scale"])
        except KeyError as missing:
            raise DataError(f"saved preprocessing lacks {missing}") from None
        if not all(a.dtype.kind in "biuf" and usable(a).all() for a in (shift, scale)):
            raise DataError("saved preprocessing is invalid (shift and scale must be finite float32 numbers)")
        shift, scale = shift.astype(np.float32), scale.astype(np.float32)
        if kind not in KINDS or shift.shape != scale.shape or shift.ndim != 1 or not shift.size:
            raise DataError(f"saved preprocessing is invalid (kind {kind!r}, "
                            f"shift {shift.shape}, scale {scale.shape})")
        prep = cls(kind, float(scale[0]) if kind == "scale" else None)
        prep.shift, prep.scale = shift, scale
        return prep


    def _statistics(self, X, rows: np.ndarray | None):
        """``_statistics`` per feature, or merged per channel and repeated for its pixels."""
        count, mean, m2, low, high = _statistics(X, rows)
        if self.channels is None:
            return count, mean, m2, low, high
        c = self.channels
        pixels = len(mean) // c
        by_channel = [a.reshape(c, pixels) for a in (mean, m2, low, high)]
        mean_c = by_channel[0].mean(axis=1, keepdims=True)
        # pooled over equal-sized pixel groups: within-pixel plus between-pixel squares
        m2_c = by_channel[1].sum(axis=1, keepdims=True) + count * ((by_channel[0] - mean_c) ** 2).sum(
            axis=1, keepdims=True)
        low_c, high_c = by_channel[2].min(axis=1, keepdims=True), by_channel[3].max(axis=1, keepdims=True)
        return (count * pixels, *(np.repeat(a, pixels, axis=1).reshape(-1)
                                  for a in (mean_c, m2_c, low_c, high_c)))


def _statistics(X, rows: np.ndarray | None):
    """Count, mean (D,), sum of squared deviations (D,), min (D,) and max (D,) of the
    selected rows, merged chunk by chunk (Chan et al.'s parallel variance) in float64."""
    d = X.shape[1]
    n = len(X) if rows is None else len(rows)
    count, mean, m2 = 0, np.zeros(d), np.zeros(d)
    low, high = np.full(d, np.inf), np.full(d, -np.inf)
    for part in chunk_slices(n, d * 8):
        block = read_rows(X, rows, part).astype(np.float64)
        k = len(block)
        block_mean = block.mean(axis=0)
        delta = block_mean - mean
        m2 = m2 + ((block - block_mean) ** 2).sum(axis=0) + delta ** 2 * (count * k / (count + k))
        mean = mean + delta * (k / (count + k))
        count += k
        low, high = np.minimum(low, block.min(axis=0)), np.maximum(high, block.max(axis=0))
    return count, mean, m2, low, high
