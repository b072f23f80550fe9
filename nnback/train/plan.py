"""What a training run needs, known before its first step and before its run folder.

``validate`` and the trainer both build their network with ``trainable_network`` after
loading the data and before creating the run folder, so a config that cannot train (a batch normalisation
layer that would see batches of one sample, a network or batch too large for the
machine's memory) is a one-line error instead of a crash an hour in. The memory per
layer comes from ``nnback.memory``, the table ``validate`` prints.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnback.build import NetworkTooLarge, build_network, layer_key
from nnback.data import load_data
from nnback.errors import ConfigError, DataError
from nnback.formatting import format_bytes
from nnback.memory import evaluation_rows, layer_memory
from nnback.registry import LAYERS

# Arrays of the size of all parameters a training process holds at its peak: weights,
# gradients, up to two optimizer state arrays and a scratch one, and the copies a
# checkpoint save makes of the weights and the optimizer state.
PARAMETER_COPIES = 8
# The training loop gathers the rows of several batches at once, into about this much
# float32 memory: one fancy-indexing call per bufferful instead of one per batch.
GATHER_BYTES = 1 << 18


@dataclass
class MemoryNeed:
    """Bytes a run needs beyond its data, by cause, with the YAML key that sets each."""

    parameters: int  # all parameters, with gradients, optimizer state, checkpoint copies
    widest_layer: str  # key of the size of the layer with the most memory per sample
    batch: int  # one training batch's layer arrays, and the buffer rows are gathered into
    evaluation: int  # one evaluation batch
    rows: int  # rows in the largest training batch
    eval_rows: int  # rows in the largest evaluation batch

    @property
    def total(self) -> int:
        return self.parameters + self.batch + self.evaluation


def batch_rows(batch_size: int, n_train: int) -> int:
    """Rows in the largest training batch: the batch size, or all the rows if fewer."""
    return min(batch_size, n_train)


def gather_rows(batch_size: int, n_train: int, n_features: int) -> int:
    """Rows of the buffer the training loop gathers its batches into: as many whole
    batches as fill ``GATHER_BYTES``, at least one, at most all the rows."""
    batches = max(1, GATHER_BYTES // (4 * n_features * batch_size))
    return min(batches * batch_size, n_train)


def memory_need(exp, model, n_features: int, n_train: int, n_eval: int) -> MemoryNeed:
    """What training ``exp`` with the built ``model`` needs, from the layers' memory table."""
    itemsize = model.dtype.itemsize
    table = layer_memory(model, n_features)
    rows = batch_rows(exp.train.batch_size, n_train)
    eval_rows = min(evaluation_rows(model, n_features, rows), n_eval)
    sized = [(row.train_values, i) for i, row in enumerate(table[1:]) if _sets_size(exp, i)]
    return MemoryNeed(
        parameters=PARAMETER_COPIES * model.num_parameters() * itemsize,
        widest_layer=layer_key(exp, max(sized)[1]) if sized else "model",
        batch=(rows * sum(row.train_values for row in table) * itemsize
               + 4 * n_features * gather_rows(exp.train.batch_size, n_train, n_features)),
        evaluation=eval_rows * sum(row.eval_values for row in table) * itemsize,
        rows=rows,
        eval_rows=eval_rows,
    )


def _sets_size(exp, i: int) -> bool:
    """Whether the config gives layer ``i`` its size (``units: auto`` does not)."""
    section = exp.model.layer_specs()[i]
    sized_by = LAYERS[section.type].spec.sized_by
    return sized_by is not None and getattr(section, sized_by) != "auto"


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


def trainable_network(exp, bundle, rng: np.random.Generator, source: str):
    """The configured network for ``bundle``, parameters drawn from ``rng``, and what
    training it needs, as ``(model, MemoryNeed)``; a ``ConfigError`` naming the key for a
    config that cannot train on ``bundle``.

    Checks: a layer with batch statistics has more than one value per statistic in
    every training batch; the network, its optimizer state and the batches fit in the
    memory left. Each layer is built only once its parameters are known to fit.
    """
    n_train = len(bundle.train)
    free = available_memory()
    itemsize = np.dtype(exp.model.dtype).itemsize
    most = None if free is None else free // (PARAMETER_COPIES * itemsize)
    try:
        model = build_network(exp, bundle, rng, source, max_parameters=most)
    except NetworkTooLarge as exc:
        raise ConfigError(f"{source}: {exc.key}: training needs "
                          f"~{format_bytes(exc.parameters * PARAMETER_COPIES * itemsize)} of memory or "
                          f"more (for the parameters, gradients and optimizer state up to this "
                          f"layer), only {format_bytes(free)} is free") from None
    _check_batch_statistics(exp, model, bundle.n_features, n_train, source)
    n_eval = max(len(split) for split in (bundle.train, bundle.val, bundle.test) if split is not None)
    need = memory_need(exp, model, bundle.n_features, n_train, n_eval)
    if free is None or need.total <= free:
        return model, need
    # The batch size is to blame if batches of one row would fit, else the network.
    one_row = need.total - need.batch + need.batch // need.rows
    key = "train.batch_size" if one_row <= free else need.widest_layer
    raise ConfigError(f"{source}: {key}: training needs ~{format_bytes(need.total)} of memory "
                      f"({format_bytes(need.parameters)} for the parameters, gradients and optimizer "
                      f"state, {format_bytes(need.batch + need.evaluation)} for the batches), "
                      f"only {format_bytes(free)} is free")


def _check_batch_statistics(exp, model, n_features: int, n_train: int, source: str) -> None:
    """Every layer with batch statistics (``spec.batch_statistics``) gets more than one
    value per feature or channel from a training batch. (A last batch of one row is
    left out of such a network's epochs by the trainer.)"""
    rows = batch_rows(exp.train.batch_size, n_train)
    for i, row in enumerate(layer_memory(model, n_features)[1:]):
        layer = model.layers[i]
        if not layer.spec.batch_statistics or rows * math.prod(row.in_shape[1:]) > 1:
            continue
        where = f"model.layers[{i}]" if exp.model.layers is not None else "model.mlp.norm"
        if exp.train.batch_size == 1:
            raise ConfigError(f"{source}: train.batch_size: batches of 1 sample have no batch "
                              f"statistics for {layer.spec.name} ({where}); use at least 2")
        raise ConfigError(f"{source}: data: 1 training row has no batch statistics for "
                          f"{layer.spec.name} ({where}); use more data or remove the layer")


def load_training_data(exp, source: str):
    """``load_data`` for ``exp``, relative paths from the working folder; data too large
    for memory is a one-line ``DataError``."""
    try:
        return load_data(exp.data, seed=exp.seed, base_dir=Path.cwd())
    except MemoryError:
        raise DataError(f"{source}: data: does not fit in the memory left "
                        f"(~{format_bytes(available_memory() or 0)} free)") from None
