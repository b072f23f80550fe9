"""nnback: small, fast, dependable neural-network training in NumPy."""

__version__ = "0.1.0"


def load(path):
    """Load saved weights (a run folder, model.npz or checkpoint) as a ``Predictor``.

    >>> model = nnback.load("runs/digits-mlp/20261128-120000")
    >>> model.predict(X)            # class names, or values for regression
    >>> model.predict_proba(X)      # (N, C) probabilities
    """
    from nnback.runfolder.saved_model import load as _load

    return _load(path)
