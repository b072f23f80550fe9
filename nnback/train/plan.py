"""What a training run needs, known before its first step and before its run folder.

``validate`` and ``train`` both call ``check_trainable`` after loading the data and
before building the network, so a config that cannot train (a batch normalisation
layer that would see batches of one sample, a network or batch too large for the
machine's memory) is a one-line error instead of a crash an hour in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnback.build import output_units
from nnback.data import load_data
from nnback.errors import ConfigError, DataError
from nnback.formatting import format_bytes
from nnback.train.evaluate import EVAL_BATCH

# Arrays of the size of all parameters a training process holds at its peak: weights,
# gradients, up to two optimizer state arrays and a scratch one, and the copies a
# checkpoint save makes of the weights and the optimizer state.
PARAMETER_COPIES = 8
# Arrays of the size of one batch's activations: outputs, their gradients, layer caches.
ACTIVATION_COPIES = 4


@dataclass
class MemoryNeed:
    """Bytes a run needs beyond its data, by cause, with the YAML key that sets each."""

    parameters: int  # all parameters, with gradients, optimizer state, checkpoint copies
    widest_layer: str  # key of the widest linear layer whose units the config sets
    batch: int  # activations of one training batch, and the gathered input batch
    evaluation: int  # activations of one evaluation batch

    @property
    def total(self) -> int:
        return self.parameters + self.batch + self.evaluation


def batch_rows(batch_size: int, n_train: int) -> int:
    """Rows in the largest training batch: the batch size, or all the rows if fewer."""
    return min(batch_size, n_train)


def memory_need(exp, n_features: int, units_out: int, n_train: int, n_eval: int) -> MemoryNeed:
    """Estimate what training ``exp`` needs, from the config and the data's shape alone."""
    itemsize = np.dtype(exp.model.dtype).itemsize
    specs = exp.model.layer_specs()
    width, widths, params, widest = n_features, [], 0, (0, "model")
    for i, spec in enumerate(specs):
        if spec.type == "linear":
            units = units_out if spec.units == "auto" else spec.units
            params += width * units + units
            if spec.units != "auto":
                key = f"model.layers[{i}].units" if exp.model.layers is not None else "model.mlp.hidden"
                widest = max(widest, (units, key))
            width = units
        elif spec.type in ("batchnorm", "layernorm"):
            params += 2 * width
        widths.append(width)
    rows = batch_rows(exp.train.batch_size, n_train)
    return MemoryNeed(
        parameters=PARAMETER_COPIES * params * itemsize,
        widest_layer=widest[1],
        batch=(ACTIVATION_COPIES * sum(widths) * itemsize + 4 * n_features) * rows,
        evaluation=2 * sum(widths) * itemsize * min(EVAL_BATCH, n_eval),
    )


def available_memory() -> int | None:
    """Bytes this process can still get: free RAM and swap (Linux), within its address
    space limit; None where unknown."""
    free = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.count(":") == 1}
        free = fields["MemAvailable"] + fields.get("SwapFree", 0)
    except (OSError, KeyError, ValueError, IndexError):
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            pass
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        limit = -1
    if limit > 0:  # RLIM_INFINITY is -1
        free = limit if free is None else min(free, limit)
    return free


def check_trainable(exp, bundle, source: str) -> None:
    """Raise a ``ConfigError`` naming the key for a config that cannot train on ``bundle``.

    Checks: batch normalisation never sees a batch of one sample in training; the
    network, its optimizer state and the batches fit in the memory left.
    """
    n_train = len(bundle.train)
    norm = next((i for i, spec in enumerate(exp.model.layer_specs()) if spec.type == "batchnorm"), None)
    if norm is not None:
        where = f"model.layers[{norm}]" if exp.model.layers is not None else "model.mlp.norm"
        if exp.train.batch_size == 1:
            raise ConfigError(f"{source}: train.batch_size: batches of 1 sample have no batch "
                              f"statistics for batchnorm ({where}); use at least 2")
        if n_train == 1:
            raise ConfigError(f"{source}: data: 1 training row has no batch statistics for "
                              f"batchnorm ({where}); use more data or remove the layer")
    units_out = output_units(exp, bundle.task, bundle.n_outputs, source)
    n_eval = max(len(split) for split in (bundle.train, bundle.val, bundle.test) if split is not None)
    need = memory_need(exp, bundle.n_features, units_out, n_train, n_eval)
    free = available_memory()
    if free is None or need.total <= free:
        return
    # The batch size is to blame if batches of one row would fit, else the network.
    one_row = need.total - need.batch + need.batch // batch_rows(exp.train.batch_size, n_train)
    key = "train.batch_size" if one_row <= free else need.widest_layer
    raise ConfigError(f"{source}: {key}: training needs ~{format_bytes(need.total)} of memory "
                      f"({format_bytes(need.parameters)} for the parameters, gradients and optimizer "
                      f"state, {format_bytes(need.batch + need.evaluation)} for the batches), "
                      f"only {format_bytes(free)} is free")


def load_training_data(exp, source: str):
    """``load_data`` for ``exp``, relative paths from the working folder; data too large
    for memory is a one-line ``DataError``."""
    try:
        return load_data(exp.data, seed=exp.seed, base_dir=Path.cwd())
    except MemoryError:
        raise DataError(f"{source}: data: does not fit in the memory left "
                        f"(~{format_bytes(available_memory() or 0)} free)") from None
