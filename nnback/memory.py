"""How much memory a built network's batches take, layer by layer, from the layers' own
output shapes and working arrays; and the evaluation batch that keeps evaluation small.

``nnback validate`` prints these numbers, the pre-run check (``nnback.train.plan``)
compares their sum with the memory left, and evaluation and prediction size their
batches from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nnback.build import EVAL_BATCH

# Evaluation may always use this much for its working arrays (or as much as a training
# batch does, if that is more).
EVAL_MEMORY = 64 << 20


@dataclass(frozen=True)
class LayerMemory:
    """One row of a network's memory table: the input, or a layer.

    Attributes:
        name: ``"input"``, or the layer's index and repr (``"0 Conv2d(1, 16, kernel_size=3)"``).
        in_shape, shape: one sample's shape entering and leaving it.
        parameters: how many parameters it has.
        train_values: values per sample a training step holds for it: its output and the
            gradient of it, and its working arrays (im2col columns and their gradient, the
            zeros a ReLU compares with).
        eval_values: values per sample an evaluation pass holds: its output and working arrays.
    """

    name: str
    in_shape: tuple
    shape: tuple
    parameters: int
    train_values: int
    eval_values: int


def layer_memory(model, n_features: int) -> list[LayerMemory]:
    """The memory table of ``model`` for samples of ``n_features`` values: the input row
    first, then one row per layer."""
    shape = model.input_shape or (n_features,)
    rows = [LayerMemory("input", shape, shape, 0, math.prod(shape), math.prod(shape))]
    for i, layer in enumerate(model.layers):
        out_shape = layer.output_shape(shape)
        out = math.prod(out_shape)
        parameters = sum(p.size for p in layer.params.values())
        rows.append(LayerMemory(f"{i} {layer!r}", shape, out_shape, parameters,
                                2 * out + layer.working_values(shape, training=True),
                                out + layer.working_values(shape, training=False)))
        shape = out_shape
    return rows


def evaluation_rows(model, n_features: int, train_rows: int) -> int:
    """Rows per evaluation pass: at most ``EVAL_BATCH``, and few enough that the pass's
    arrays stay within ``EVAL_MEMORY`` or a training step's (of ``train_rows`` rows),
    whichever is larger. It depends on the network and the batch size alone, so a run
    evaluates the same way on every machine."""
    table = layer_memory(model, n_features)
    per_row = sum(row.eval_values for row in table) * model.dtype.itemsize
    budget = max(EVAL_MEMORY, train_rows * sum(row.train_values for row in table) * model.dtype.itemsize)
    return max(1, min(EVAL_BATCH, budget // per_row))
