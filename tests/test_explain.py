import numpy as np
import pytest

from nnback.commands.explain import explain_config, explain_layer, explain_model
from nnback.errors import ConfigError
from nnback.layers import (
    GELU,
    BatchNorm1d,
    Dropout,
    Layer,
    LayerNorm,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    Softplus,
    Tanh,
)
from nnback.losses import MSE, BCEWithLogits, Hinge, SoftmaxCrossEntropy
from nnback.model import Sequential
from nnback.registry import LAYERS, LOSSES

SPIRAL = """\
name: spiral-mlp
data: {source: spiral, classes: 3, points_per_class: 20, split: {val: 0.2}}
model:
  layers: [{type: linear, units: 16}, {type: tanh}, {type: linear, units: auto}]
loss: softmax_cross_entropy
optimizer: {type: sgd, lr: 1.0}
"""


def block(text, header):
    """The lines of the block that starts with ``header``, up to the blank line after it."""
    lines = text.splitlines()
    start = lines.index(header)
    end = lines.index("", start)
    return lines[start:end]


def test_every_registered_layer_and_loss_has_its_formulas():
    assert all(cls.spec.formulas is not None for cls in [*LAYERS.values(), *LOSSES.values()])


def test_linear_layer_block_has_formulas_shapes_and_cache():
    model = Sequential([Linear(5, 7, rng=np.random.default_rng(0))])
    assert explain_layer(0, model[0], 5) == [
        "[0] Linear(5, 7)",
        "    shapes      x (N, 5) -> out (N, 7);  W (5, 7), b (7,)",
        "    forward     out = x @ W + b",
        "    backward    passes back  dx = dout @ W.T",
        "                keeps        dW = x.T @ dout",
        "                             db = sum over N of dout",
        "    caches      x (N, 5)",
    ]


def test_linear_without_bias_keeps_only_dw():
    lines = explain_layer(2, Linear(4, 3, bias=False, rng=np.random.default_rng(0)), 4)
    assert "    forward     out = x @ W" in lines
    assert not any("db" in line for line in lines)
    assert lines[1] == "    shapes      x (N, 4) -> out (N, 3);  W (4, 3)"


def test_whole_network_is_explained_in_order_with_the_loss_last():
    rng = np.random.default_rng(0)
    model = Sequential([Linear(6, 8, rng=rng), BatchNorm1d(8), LeakyReLU(0.2), Dropout(0.25, rng=rng),
                        Linear(8, 4, rng=rng), LayerNorm(4), Sigmoid(), Tanh(), GELU(), Softplus(beta=2.0),
                        ReLU(), Linear(4, 3, rng=rng)])
    text = explain_model(model, 6, SoftmaxCrossEntropy(label_smoothing=0.1))
    headers = [line for line in text.splitlines() if line.startswith("[")]
    assert headers == [f"[{i}] {layer!r}" for i, layer in enumerate(model.layers)] + [
        "[loss] SoftmaxCrossEntropy(label_smoothing=0.1)"]
    assert text.splitlines()[0] == (
        "12 layers, 131 parameters (float32), input (N, 6) for a batch of N samples.")
    bn = block(text, "[1] BatchNorm1d(8, eps=1e-05, momentum=0.1)")
    assert bn[1] == "    shapes      x (N, 8) -> out (N, 8);  gamma (8,), beta (8,)"
    assert bn[-3].endswith("keeps        dgamma = sum over N of (dout * xhat)")
    assert bn[-1] == "    caches      xhat (N, 8), 1 / sqrt(var + eps) (1, 8)"
    assert "out = x where x > 0, else 0.2 * x" in block(text, "[2] LeakyReLU(negative_slope=0.2)")[2]
    assert "mask = (uniform(0, 1) >= 0.25) / (1 - 0.25)" in block(text, "[3] Dropout(p=0.25)")[2]
    layer_norm = block(text, "[5] LayerNorm(4, eps=1e-05)")
    assert layer_norm[-1] == "    caches      xhat (N, 4), 1 / sqrt(var + eps) (N, 1)"
    assert "dx = dout * out * (1 - out)" in block(text, "[6] Sigmoid()")[3]
    assert "dx = dout * (1 - out**2)" in block(text, "[7] Tanh()")[3]
    assert "log(1 + exp(2.0 * x)) / 2.0" in block(text, "[9] Softplus(beta=2.0, threshold=20.0)")[2]
    assert text.splitlines()[-6:] == [
        "    shapes      scores (N, 3) -> L, a number",
        "    forward     p = softmax(scores) = exp(scores - max) / sum over C of exp(scores - max)",
        "                target = (1 - e) * onehot(y) + e / C,  label smoothing e = 0.1",
        "                L = -mean over N of sum over C of target * log p",
        "    backward    starts the backward pass: dout of the last layer is",
        "                    dscores = (p - target) / N",
    ]


@pytest.mark.parametrize("loss, gradient", [
    (MSE(), "dscores = 2 * (scores - y) / (N * 1)"),
    (Hinge(margin=0.5), "dscores_y = -(number of classes j with margin_j > 0) / N"),
    (BCEWithLogits(), "dscores = (sigmoid(scores) - y) / (N * 1)"),
])
def test_each_loss_gives_the_gradient_that_starts_backward(loss, gradient):
    model = Sequential([Linear(3, 1, rng=np.random.default_rng(0))])
    assert explain_model(model, 3, loss).splitlines()[-1].strip() == gradient


def test_a_layer_without_formulas_shows_its_docstring():
    class Square(Layer):
        """Element-wise square, out = x**2."""

        def output_features(self, in_features):
            return in_features

    assert explain_layer(0, Square(), 4)[-1] == "    forward     Element-wise square, out = x**2."


def test_explain_config_uses_the_data_for_the_shapes(tmp_path):
    config = tmp_path / "spiral.yaml"
    config.write_text(SPIRAL)
    text = explain_config(config, ["model.layers.0.units=5"])
    assert text.splitlines()[0] == f"{config}: spiral-mlp"
    assert "[0] Linear(2, 5)" in text and "[1] Tanh()" in text and "[2] Linear(5, 3)" in text
    assert "    shapes      scores (N, 3) -> L, a number" in text
    with pytest.raises(ConfigError, match="optimizer.lr"):
        explain_config(config, ["optimizer.lr=-1"])
