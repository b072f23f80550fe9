"""What a checkpoint or ``model.npz`` holds besides training progress.

Arrays are named by role: ``model/<name>`` (parameters and buffers, as in
``Sequential.state_dict``), ``prep/<name>`` (the preprocessing statistics) and, in
checkpoints, ``optim/<key>``. The JSON meta carries the resolved config and what the
data looked like, so a model can be rebuilt and applied to raw inputs.
"""

from __future__ import annotations

import platform

import numpy as np

import nnback


def model_arrays(model, bundle) -> dict:
    """Weights, buffers and preprocessing statistics by role-prefixed name."""
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update((f"prep/{k}", v) for k, v in bundle.preprocessor.state_dict().items())
    return arrays


def role_arrays(arrays: dict, role: str) -> dict:
    """The arrays named ``<role>/<name>``, keyed by ``<name>``."""
    prefix = f"{role}/"
    return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}


def restore_arrays(model, arrays: dict) -> None:
    """Load the ``model/`` arrays into ``model``."""
    model.load_state_dict(role_arrays(arrays, "model"))


def run_meta(exp, bundle) -> dict:
    """JSON-able description of the run: config, data shape, classes, versions."""
    return {
        "config": exp.model_dump(mode="json"),
        "data": bundle.meta.to_dict(),
        "versions": versions(),
    }


def versions() -> dict:
    return {"nnback": nnback.__version__, "numpy": np.__version__, "python": platform.python_version()}
