"""``nnback explain CONFIG``: the staged computation of the configured network, in formulas.

For each layer in order: its forward formula, its backward formulas (the gradient it
passes back to the layer below and the parameter gradients it keeps for the
optimizer), its input, output and parameter shapes for the configured data, and what
it caches between the two passes. Then the loss, where the backward pass starts.

The formulas come from each class's ``spec`` (``nnback.spec.Formulas``) and are
written for a batch of N samples; ``@`` is the matrix product, ``*`` the
element-wise product, and sums "over N" run down the batch axis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnback.build import build_loss, build_network
from nnback.commands.validate import shape_text
from nnback.config import load_config
from nnback.data import load_data
from nnback.memory import layer_memory


def _block(label: str, lines: list[str]) -> list[str]:
    """``lines`` under a 12-wide label column, the label on the first line only."""
    return [f"    {label if k == 0 else '':<12}{line}" for k, line in enumerate(lines)]


def explain_layer(index: int, layer, in_shape) -> list[str]:
    """The lines for one layer fed samples of ``in_shape`` (a tuple, or D for (D,))."""
    in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
    out_shape = layer.output_shape(in_shape)
    i, o = (", ".join(map(str, shape)) for shape in (in_shape, out_shape))
    params = ", ".join(f"{k} {tuple(p.shape)}" for k, p in layer.params.items())
    lines = [f"[{index}] {layer!r}",
             f"    shapes      x (N, {i}) -> out (N, {o})" + (f";  {params}" if params else "")]
    formulas = _formulas(layer)
    if formulas is None:
        summary = (type(layer).__doc__ or "no formula recorded for this layer").strip().splitlines()[0]
        return lines + _block("forward", [summary])
    sizes = layer.formula_sizes(in_shape) if hasattr(layer, "formula_sizes") else {}

    def fill(template: str) -> str:
        return template.format(i=i, o=o, layer=layer, bias=" + b" if "b" in layer.params else "",
                               **sizes)

    lines += _block("forward", [line for line in map(fill, formulas.forward) if line])
    backward = ["passes back  " + fill(formulas.passes[0])]
    backward += ["             " + fill(t) for t in formulas.passes[1:]]
    kept = [fill(f) for key, f in formulas.keeps if key in layer.params]
    backward += [("keeps        " if k == 0 else "             ") + f for k, f in enumerate(kept)]
    lines += _block("backward", backward)
    lines += _block("caches", [", ".join(f"{name} {fill(shape)}" for name, shape in formulas.caches)])
    return lines


def _formulas(obj):
    """The formulas a layer or loss declares in its class's spec, or None."""
    spec = getattr(type(obj), "spec", None)
    return getattr(spec, "formulas", None)


def explain_loss(loss, n_scores: int) -> list[str]:
    """The lines for the loss on ``n_scores`` scores per sample."""
    lines = [f"[loss] {loss!r}", f"    shapes      scores (N, {n_scores}) -> L, a number"]
    formulas = _formulas(loss)
    if formulas is None:
        return lines
    lines += _block("forward", [t.format(c=n_scores, loss=loss) for t in formulas.forward])
    passes = [t.format(c=n_scores, loss=loss) for t in formulas.passes]
    lines += _block("backward", ["starts the backward pass: dout of the last layer is"]
                    + ["    " + t for t in passes])
    return lines


def explain_model(model, n_features: int, loss=None) -> str:
    """The staged computation of ``model`` (a Sequential) on ``n_features`` inputs.

    Args:
        model: the network; each layer's ``output_shape`` gives the shapes.
        n_features: D_in of each input row (reshaped to ``model.input_shape`` if set).
        loss: the loss object, explained after the last layer; None to leave it out.
    """
    shapes = [row.shape for row in layer_memory(model, n_features)]  # the input's, then each layer's
    lines = [
        f"{len(model.layers)} layers, {model.num_parameters():,} parameters ({model.dtype}), "
        f"input {shape_text(shapes[0])} for a batch of N samples.",
        "Forward runs top to bottom. Backward runs bottom to top: each layer receives dout = dL/d(out),",
        "passes back dx = dL/dx (the chain rule: dout times its local gradient) and keeps the",
        "gradients of its own parameters for the optimizer. Every gradient has the shape of its",
        "variable: dx that of x, dW that of W.",
        "",
    ]
    for index, layer in enumerate(model.layers):
        lines += explain_layer(index, layer, shapes[index])
        lines.append("")
    if loss is not None:
        lines += explain_loss(loss, shapes[-1][0])
    return "\n".join(lines).rstrip()


def explain_config(config: str | Path, overrides=()) -> str:
    """``nnback explain CONFIG``: build the configured network for its data and explain it.

    Raises:
        NnbackError: a bad config or data (as ``nnback validate``).
    """
    exp = load_config(config, overrides, names_folder=False)
    bundle = load_data(exp.data, seed=exp.seed, base_dir=Path.cwd())
    model = build_network(exp, bundle, np.random.default_rng(exp.seed), str(config))
    return f"{config}: {exp.name}\n" + explain_model(model, bundle.n_features, build_loss(exp))
