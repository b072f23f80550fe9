"""Saved weights as a usable model: ``nnback.load(path)`` and what it returns.

A run folder, its ``model.npz`` or any checkpoint holds the resolved config, the data
description (task, classes, feature count), the preprocessing statistics and the
weights; that is all a ``Predictor`` needs to turn raw inputs into labelled outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnback.build import NetworkTooLarge, build_loss, build_network, predicted_classes
from nnback.config.loader import SAVED
from nnback.config.schema import Experiment
from nnback.data import DataMeta, Preprocessor, labels_from_indices
from nnback.errors import CheckpointError, DataError
from nnback.layers.activations import sigmoid
from nnback.memory import evaluation_rows
from nnback.registry import LOSSES
from nnback.runfolder.checkpoint import load_checkpoint
from nnback.runfolder.snapshot import restore_arrays, role_arrays
from nnback.runfolder.sweep_folder import is_sweep_folder, pick_a_trial


def resolve_weights(path: str | Path) -> Path:
    """The weights file for a run folder (model.npz, else the newest checkpoint) or a file."""
    path = Path(path)
    if is_sweep_folder(path):
        raise CheckpointError(pick_a_trial(path))
    if path.is_dir():
        for candidate in ("model.npz", "checkpoints/best.npz", "checkpoints/last.npz"):
            if (path / candidate).is_file():
                return path / candidate
        raise CheckpointError(f"{path}: no model.npz or checkpoint in this folder")
    if not path.exists():
        raise CheckpointError(f"{path}: no such run folder or weights file")
    return path


class Predictor:
    """A trained network with its preprocessing and class names.

    Args:
        model: the Sequential, weights loaded.
        preprocessor: the fitted preprocessing of training.
        data: the saved data description (task, classes, feature count).
        exp: the resolved experiment it was trained with.
    """

    def __init__(self, model, preprocessor: Preprocessor, data: DataMeta, exp: Experiment):
        self.model, self.preprocessor, self.data, self.exp = model, preprocessor, data, exp
        self.loss_fn = build_loss(exp)
        self.eval_rows = evaluation_rows(model, data.n_features, exp.train.batch_size)

    def __repr__(self) -> str:
        return f"Predictor({self.exp.name!r}, {self.data.task}, {self.data.n_features} features)"

    def scores(self, X, preprocessed: bool = False) -> np.ndarray:
        """Raw network outputs for inputs X (N, D), (N, n_outputs) or (N, 1).

        Raises:
            DataError: an output is NaN or inf (inputs far outside the training range).
        """
        X = np.asarray(X)
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if not preprocessed:
            X = self.preprocessor.transform(X)
        with np.errstate(over="ignore", invalid="ignore"):  # reported below, per row
            parts = [self.model.forward(X[i:i + self.eval_rows], training=False)
                     for i in range(0, len(X), self.eval_rows)]
        scores = np.concatenate(parts) if parts else np.empty((0, self.model.layers[-1].out_features))
        bad = np.flatnonzero(~np.isfinite(scores).all(axis=1))
        if bad.size:
            raise DataError(f"row {bad[0]} of the inputs (counting from 0): the network's outputs are "
                            "not finite; the inputs are far outside the range it was trained on")
        return scores

    def predict_proba(self, X, preprocessed: bool = False) -> np.ndarray:
        """Class probabilities (N, C), columns in the order of ``classes``."""
        if not self.probabilistic:
            raise ValueError(f"probabilities need a probabilistic loss, this model uses {self.exp.loss.type}")
        scores = self.scores(X, preprocessed)
        if scores.shape[1] == 1:
            p = sigmoid(scores)
            return np.hstack([1 - p, p])
        exp = np.exp(scores - scores.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, X, preprocessed: bool = False) -> np.ndarray:
        """Class names (N,) for classification, values (N, T) for regression."""
        scores = self.scores(X, preprocessed)
        if self.data.task != "classification":
            return scores
        return labels_from_indices(predicted_classes(scores), self.data.classes)

    @property
    def classes(self) -> list | None:
        return self.data.classes

    @property
    def probabilistic(self) -> bool:
        """True when the loss makes the scores probabilities (``predict_proba`` works)."""
        return LOSSES[self.exp.loss.type].spec.probabilities


def load(path: str | Path) -> Predictor:
    """Load saved weights: a run folder, its ``model.npz`` or a checkpoint ``.npz``.

    Every part of the file is checked before use, since it may be hand-edited or
    foreign: the config and data description, the preprocessing (as many features as
    the data), network sizes no larger than the stored weights allow, and the weights'
    names, shapes and dtypes.

    Raises:
        CheckpointError: missing, unreadable or corrupted file, or one that is not an
            nnback model.
    """
    weights = resolve_weights(path)
    arrays, meta = load_checkpoint(weights)
    try:
        exp = Experiment.model_validate(meta["config"], context=SAVED)
        data = DataMeta.from_dict(meta["data"])
        prep = Preprocessor.from_state_dict(role_arrays(arrays, "prep"))
    except (KeyError, ValueError, DataError) as exc:
        reason = str(exc) if isinstance(exc, DataError) else f"{type(exc).__name__}: {exc}"
        raise CheckpointError(f"{weights}: not an nnback model ({' '.join(reason.split())[:300]})") from None
    if prep.n_features != data.n_features:
        raise CheckpointError(f"{weights}: not an nnback model (preprocessing for {prep.n_features} "
                              f"features, data with {data.n_features})")
    # The config may ask for far more weights than the file holds: count before allocating.
    stored = sum(array.size for array in role_arrays(arrays, "model").values())
    try:
        model = build_network(exp, data, np.random.default_rng(0), str(weights), max_parameters=stored)
    except NetworkTooLarge as exc:
        raise CheckpointError(f"{weights}: weights do not fit the saved config: its layers up to "
                              f"{exc.key} need more values than the {stored:,} stored "
                              f"(at least {exc.parameters:,})") from None
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # values the dtype cannot hold: below
            restore_arrays(model, arrays)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{weights}: weights do not fit the saved config: {exc}") from None
    bad = [name for name, array in model.state_dict().items() if not np.isfinite(array).all()]
    if bad:
        raise CheckpointError(f"{weights}: weights {', '.join(bad)} hold NaN or inf "
                              f"(or values too large for {exp.model.dtype})")
    return Predictor(model, prep, data, exp)
