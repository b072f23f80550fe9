"""``nnback explain CONFIG``: the staged computation of the configured network, in formulas.

For each layer in order: its forward formula, its backward formulas (the gradient it
passes back to the layer below and the parameter gradients it keeps for the
optimizer), its input, output and parameter shapes for the configured data, and what
it caches between the two passes. Then the loss, where the backward pass starts.

Formulas are written for a batch of N samples; ``@`` is the matrix product, ``*`` the
element-wise product, and sums "over N" run down the batch axis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnback.build import build_loss, build_network
from nnback.config import load_config
from nnback.data import load_data

# Per layer class: forward lines, the lines of what it passes back, (param, formula) it
# keeps, (cached array, shape). Templates see i = D_in, o = D_out, layer, bias and keep.
LAYER_FORMULAS = {
    "Linear": {
        "forward": ["out = x @ W{bias}"],
        "passes": ["dx = dout @ W.T"],
        "keeps": [("W", "dW = x.T @ dout"), ("b", "db = sum over N of dout")],
        "caches": [("x", "(N, {i})")],
    },
    "ReLU": {
        "forward": ["out = max(x, 0)"],
        "passes": ["dx = dout * (out > 0)   (a max gate: the gradient flows only where x > 0)"],
        "caches": [("out", "(N, {i})")],
    },
    "LeakyReLU": {
        "forward": ["out = x where x > 0, else {layer.negative_slope} * x"],
        "passes": ["dx = dout where x > 0, else {layer.negative_slope} * dout"],
        "caches": [("mask x > 0", "(N, {i}) bool")],
    },
    "Sigmoid": {
        "forward": ["out = 1 / (1 + exp(-x))"],
        "passes": ["dx = dout * out * (1 - out)   (the local gradient is at most 0.25)"],
        "caches": [("out", "(N, {i})")],
    },
    "Tanh": {
        "forward": ["out = tanh(x)"],
        "passes": ["dx = dout * (1 - out**2)"],
        "caches": [("out", "(N, {i})")],
    },
    "GELU": {
        "forward": ["t = tanh(sqrt(2/pi) * (x + 0.044715 * x**3))", "out = 0.5 * x * (1 + t)"],
        "passes": ["dt/dx = sqrt(2/pi) * (1 + 3 * 0.044715 * x**2) * (1 - t**2)",
                   "dx = dout * (0.5 * (1 + t) + 0.5 * x * dt/dx)"],
        "caches": [("x", "(N, {i})"), ("t", "(N, {i})")],
    },
    "Softplus": {
        "forward": ["out = log(1 + exp({layer.beta} * x)) / {layer.beta}   "
                    "(out = x where {layer.beta} * x > {layer.threshold})"],
        "passes": ["dx = dout * sigmoid({layer.beta} * x)   (dx = dout where linear)"],
        "caches": [("beta * x", "(N, {i})"), ("mask of the linear region", "(N, {i}) bool")],
    },
    "Dropout": {
        "forward": ["training: mask = (uniform(0, 1) < {keep}) / {keep};  out = x * mask",
                    "evaluation: out = x"],
        "passes": ["dx = dout * mask   (evaluation: dx = dout)"],
        "caches": [("mask, training only", "(N, {i})")],
    },
    "BatchNorm1d": {
        "forward": ["training: mu = mean over N of x;  var = mean over N of (x - mu)**2",
                    "xhat = (x - mu) / sqrt(var + {layer.eps});  out = gamma * xhat + beta",
                    "running_mean and running_var move {layer.momentum} of the way to mu and var;",
                    "evaluation normalises with them instead"],
        "passes": ["dxhat = dout * gamma",
                   "dx = (dxhat - mean over N of dxhat - xhat * mean over N of (dxhat * xhat))"
                   " / sqrt(var + eps)"],
        "keeps": [("gamma", "dgamma = sum over N of (dout * xhat)"), ("beta", "dbeta = sum over N of dout")],
        "caches": [("xhat", "(N, {i})"), ("1 / sqrt(var + eps)", "(1, {i})")],
    },
    "LayerNorm": {
        "forward": ["mu, var = mean and variance of each sample over its {i} features",
                    "xhat = (x - mu) / sqrt(var + {layer.eps});  out = gamma * xhat + beta"],
        "passes": ["dxhat = dout * gamma",
                   "dx = (dxhat - mean over D of dxhat - xhat * mean over D of (dxhat * xhat))"
                   " / sqrt(var + eps)"],
        "keeps": [("gamma", "dgamma = sum over N of (dout * xhat)"), ("beta", "dbeta = sum over N of dout")],
        "caches": [("xhat", "(N, {i})"), ("1 / sqrt(var + eps)", "(N, 1)")],
    },
}

# Per loss class: forward lines and the gradient that starts the backward pass.
LOSS_FORMULAS = {
    "SoftmaxCrossEntropy": {
        "forward": ["p = softmax(scores) = exp(scores - max) / sum over C of exp(scores - max)",
                    "target = (1 - e) * onehot(y) + e / C,  label smoothing e = {loss.label_smoothing}",
                    "L = -mean over N of sum over C of target * log p"],
        "passes": ["dscores = (p - target) / N"],
    },
    "MSE": {
        "forward": ["L = mean over the N * {c} elements of (scores - y)**2"],
        "passes": ["dscores = 2 * (scores - y) / (N * {c})"],
    },
    "Hinge": {
        "forward": ["margin_j = max(0, scores_j - scores_y + {loss.margin}) for every class j != y",
                    "L = sum of the margins / N"],
        "passes": ["dscores_j = (margin_j > 0) / N",
                   "dscores_y = -(number of classes j with margin_j > 0) / N"],
    },
    "BCEWithLogits": {
        "forward": ["L = mean over the N * {c} scores s of max(s, 0) - s * y + log(1 + exp(-|s|))"],
        "passes": ["dscores = (sigmoid(scores) - y) / (N * {c})"],
    },
}


def _block(label: str, lines: list[str]) -> list[str]:
    """``lines`` under a 12-wide label column, the label on the first line only."""
    return [f"    {label if k == 0 else '':<12}{line}" for k, line in enumerate(lines)]


def explain_layer(index: int, layer, d_in: int) -> list[str]:
    """The lines for one layer fed ``d_in`` features."""
    d_out = layer.output_features(d_in)
    params = ", ".join(f"{k} {tuple(p.shape)}" for k, p in layer.params.items())
    lines = [f"[{index}] {layer!r}",
             f"    shapes      x (N, {d_in}) -> out (N, {d_out})" + (f";  {params}" if params else "")]
    spec = LAYER_FORMULAS.get(type(layer).__name__)
    if spec is None:
        summary = (type(layer).__doc__ or "no formula recorded for this layer").strip().splitlines()[0]
        return lines + _block("forward", [summary])

    def fill(template: str) -> str:
        keep = f"{1 - getattr(layer, 'p', 0):g}"
        return template.format(i=d_in, o=d_out, layer=layer, keep=keep,
                               bias=" + b" if "b" in layer.params else "")

    lines += _block("forward", [fill(t) for t in spec["forward"]])
    backward = ["passes back  " + fill(spec["passes"][0])]
    backward += ["             " + fill(t) for t in spec["passes"][1:]]
    kept = [fill(f) for key, f in spec.get("keeps", ()) if key in layer.params]
    backward += [("keeps        " if k == 0 else "             ") + f for k, f in enumerate(kept)]
    lines += _block("backward", backward)
    lines += _block("caches", [", ".join(f"{name} {fill(shape)}" for name, shape in spec["caches"])])
    return lines


def explain_loss(loss, n_scores: int) -> list[str]:
    """The lines for the loss on ``n_scores`` scores per sample."""
    lines = [f"[loss] {loss!r}", f"    shapes      scores (N, {n_scores}) -> L, a number"]
    spec = LOSS_FORMULAS.get(type(loss).__name__)
    if spec is None:
        return lines
    lines += _block("forward", [t.format(c=n_scores, loss=loss) for t in spec["forward"]])
    passes = [t.format(c=n_scores, loss=loss) for t in spec["passes"]]
    lines += _block("backward", ["starts the backward pass: dout of the last layer is"]
                    + ["    " + t for t in passes])
    return lines


def explain_model(model, n_features: int, loss=None) -> str:
    """The staged computation of ``model`` (a Sequential) on ``n_features`` inputs.

    Args:
        model: the network; each layer's ``output_features`` gives the shapes.
        n_features: D_in of the first layer.
        loss: the loss object, explained after the last layer; None to leave it out.
    """
    lines = [
        f"{len(model.layers)} layers, {model.num_parameters():,} parameters ({model.dtype}), "
        f"input (N, {n_features}) for a batch of N samples.",
        "Forward runs top to bottom. Backward runs bottom to top: each layer receives dout = dL/d(out),",
        "passes back dx = dL/dx (the chain rule: dout times its local gradient) and keeps the",
        "gradients of its own parameters for the optimizer. Every gradient has the shape of its",
        "variable: dx that of x, dW that of W.",
        "",
    ]
    width = n_features
    for index, layer in enumerate(model.layers):
        lines += explain_layer(index, layer, width)
        lines.append("")
        width = layer.output_features(width)
    if loss is not None:
        lines += explain_loss(loss, width)
    return "\n".join(lines).rstrip()


def explain_config(config: str | Path, overrides=()) -> str:
    """``nnback explain CONFIG``: build the configured network for its data and explain it.

    Raises:
        NnbackError: a bad config or data (as ``nnback validate``).
    """
    exp = load_config(config, overrides)
    bundle = load_data(exp.data, seed=exp.seed, base_dir=Path.cwd())
    model = build_network(exp, bundle, np.random.default_rng(exp.seed), str(config))
    return f"{config}: {exp.name}\n" + explain_model(model, bundle.n_features, build_loss(exp))
