"""A saved model as an ONNX graph: preprocessing, layers and outputs, built with ``onnx.helper``.

The graph computes what ``nnback predict`` does:

    input          (N, D) float32 raw rows, N dynamic
    Sub, Mul       the saved preprocessing ``(x - shift) * scale`` (left out where it is
                   the identity), in float32 as in nnback
    Cast           to float64 when the graph computes in float64
    Reshape        to images (N, C, H, W) for a ConvNet
    layers         one group of nodes per layer, from ``LAYER_NODES``
    outputs        classifiers: ``probabilities`` (N, C) float32 and ``label`` (N,) int64;
                   regression: ``values`` (N, T) float32

Adding a layer class is one entry in ``LAYER_NODES``: a function that appends the
layer's nodes and returns the name of its output. Importing this module needs the
``onnx`` package (the ``[onnx]`` extra).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import nnback
from nnback import layers
from nnback.errors import ExportError

DEFAULT_OPSET = 17
MIN_OPSET = 17  # LayerNormalization
GELU_OPSET = 20  # the Gelu operator; older opsets spell the tanh form out
DTYPES = ("float32", "float64")
_ELEM_TYPE = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}


class Graph:
    """Nodes and initializers being assembled into one ONNX graph.

    Args:
        dtype: np.float32 or np.float64, of the weights and the arithmetic.
        opset: the ONNX operator set the nodes are written for.

    Attributes:
        nodes: the NodeProtos in order.  initializers: the TensorProtos (weights, constants).
        scope: prefix of the node names being added (``"layer3"``).
    """

    def __init__(self, dtype, opset: int):
        self.dtype = np.dtype(dtype)
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self.scope = "graph"
        self._ids = itertools.count()

    def node(self, op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        """Append an ``op`` node; return the name of its one output (``out`` if given)."""
        name = f"{self.scope}/{op}_{next(self._ids)}"
        out = out or name
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def weight(self, name: str, array) -> str:
        """Add ``array`` as an initializer of the graph's dtype named ``name``; return the name."""
        self.initializers.append(numpy_helper.from_array(np.asarray(array, self.dtype), name))
        return name

    def const(self, value, dtype=None) -> str:
        """Add a constant (scalar or array, the graph's dtype unless given); return its name."""
        array = np.asarray(value, dtype or self.dtype)
        name = f"{self.scope}/const_{next(self._ids)}"
        self.initializers.append(numpy_helper.from_array(array, name))
        return name


# -- layers: (graph, layer, x, index) -> name of the output -------------------------------


def _linear(g: Graph, layer: layers.Linear, x: str, i: int) -> str:
    """``x @ W + b`` as one Gemm; W is (D_in, D_out), so no transpose."""
    inputs = [x, g.weight(f"{i}.W", layer.params["W"])]
    if "b" in layer.params:
        inputs.append(g.weight(f"{i}.b", layer.params["b"]))
    return g.node("Gemm", inputs)


def _elementwise(op: str):
    def nodes(g: Graph, layer, x: str, i: int) -> str:
        return g.node(op, [x])

    return nodes


def _leaky_relu(g: Graph, layer: layers.LeakyReLU, x: str, i: int) -> str:
    return g.node("LeakyRelu", [x], alpha=float(layer.negative_slope))


def _gelu(g: Graph, layer: layers.GELU, x: str, i: int) -> str:
    """nnback's GELU is the tanh form: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
    if g.opset >= GELU_OPSET:
        return g.node("Gelu", [x], approximate="tanh")
    cube = g.node("Mul", [g.node("Mul", [x, x]), x])
    inner = g.node("Add", [x, g.node("Mul", [cube, g.const(0.044715)])])
    t = g.node("Tanh", [g.node("Mul", [inner, g.const(math.sqrt(2 / math.pi))])])
    return g.node("Mul", [g.node("Mul", [x, g.const(0.5)]), g.node("Add", [t, g.const(1.0)])])


def _softplus(g: Graph, layer: layers.Softplus, x: str, i: int) -> str:
    """``x`` where ``beta x > threshold``, else ``log(1 + exp(beta x)) / beta`` computed as
    nnback does, ``max(bx, 0) + log(1 + exp(-|bx|))`` (ONNX Runtime has no float64 Softplus)."""
    beta = g.const(layer.beta)
    bx = g.node("Mul", [x, beta])
    exp_neg_abs = g.node("Exp", [g.node("Neg", [g.node("Abs", [bx])])])
    tail = g.node("Log", [g.node("Add", [g.const(1.0), exp_neg_abs])])
    soft = g.node("Div", [g.node("Add", [g.node("Relu", [bx]), tail]), beta])
    linear = g.node("Greater", [bx, g.const(layer.threshold)])
    return g.node("Where", [linear, x, soft])


def _layer_norm(g: Graph, layer: layers.LayerNorm, x: str, i: int) -> str:
    gamma, beta = (g.weight(f"{i}.{k}", layer.params[k]) for k in ("gamma", "beta"))
    return g.node("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=float(layer.eps))


def _batch_norm(g: Graph, layer: layers.BatchNorm1d, x: str, i: int) -> str:
    """Inference form: normalised with the running statistics (input (N, C, ...))."""
    names = ("gamma", "beta", "running_mean", "running_var")
    arrays = {**layer.params, **layer.buffers}
    return g.node("BatchNormalization", [x, *(g.weight(f"{i}.{k}", arrays[k]) for k in names)],
                  epsilon=float(layer.eps))


def _dropout(g: Graph, layer: layers.Dropout, x: str, i: int) -> str:
    """The identity at inference: no node."""
    return x


def _conv2d(g: Graph, layer: layers.Conv2d, x: str, i: int) -> str:
    """One Conv: W is (out_channels, in_channels, kh, kw) in nnback as in ONNX."""
    inputs = [x, g.weight(f"{i}.W", layer.params["W"])]
    if "b" in layer.params:
        inputs.append(g.weight(f"{i}.b", layer.params["b"]))
    ph, pw = layer.padding
    return g.node("Conv", inputs, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                  pads=[ph, pw, ph, pw])


def _window_pool(op: str):
    def nodes(g: Graph, layer, x: str, i: int) -> str:
        return g.node(op, [x], kernel_shape=list(layer.kernel_size), strides=list(layer.stride))

    return nodes


def _global_avg_pool(g: Graph, layer: layers.GlobalAvgPool2d, x: str, i: int) -> str:
    """(N, C, H, W) -> (N, C): GlobalAveragePool keeps (N, C, 1, 1), Flatten drops the 1s."""
    return g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)


def _flatten(g: Graph, layer: layers.Flatten, x: str, i: int) -> str:
    return g.node("Flatten", [x], axis=1)


LAYER_NODES = {
    layers.Linear: _linear,
    layers.ReLU: _elementwise("Relu"),
    layers.LeakyReLU: _leaky_relu,
    layers.Sigmoid: _elementwise("Sigmoid"),
    layers.Tanh: _elementwise("Tanh"),
    layers.GELU: _gelu,
    layers.Softplus: _softplus,
    layers.LayerNorm: _layer_norm,
    layers.BatchNorm1d: _batch_norm,
    layers.Dropout: _dropout,
    layers.Conv2d: _conv2d,
    layers.MaxPool2d: _window_pool("MaxPool"),
    layers.AvgPool2d: _window_pool("AveragePool"),
    layers.GlobalAvgPool2d: _global_avg_pool,
    layers.Flatten: _flatten,
    layers.BatchNorm2d: _batch_norm,
}


# -- the whole model ----------------------------------------------------------------------


def output_kind(loss: str) -> str:
    """``"softmax"``, ``"sigmoid"`` (one binary logit) or ``"values"`` for a loss type.

    Raises:
        ExportError: a loss whose scores are not probabilities or values (hinge).
    """
    kinds = {"softmax_cross_entropy": "softmax", "bce_with_logits": "sigmoid", "mse": "values"}
    if loss not in kinds:
        raise ExportError(f"loss '{loss}' gives scores that are neither probabilities nor values; "
                          f"export supports {', '.join(kinds)}")
    return kinds[loss]


def _check_exportable(predictor) -> None:
    """Raise ExportError naming the first layer or option an ONNX graph cannot hold."""
    output_kind(predictor.exp.loss.type)
    for i, layer in enumerate(predictor.model.layers):
        if type(layer) not in LAYER_NODES:
            raise ExportError(f"layer {i} ({layer!r}) cannot be exported to ONNX; supported: "
                              f"{', '.join(cls.__name__ for cls in LAYER_NODES)}")


def build_onnx(predictor, opset: int = DEFAULT_OPSET, dtype: str = "float32") -> onnx.ModelProto:
    """The ONNX model of a loaded ``Predictor``, checked by ``onnx.checker``.

    Args:
        predictor: from ``nnback.load``.
        opset: ONNX operator set, MIN_OPSET up to what the installed onnx knows.
        dtype: "float32" or "float64": weights and arithmetic (inputs and outputs stay float32).

    Raises:
        ExportError: an unsupported layer, loss, opset or dtype.
    """
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ExportError(f"--opset: {opset} is not supported; choose {MIN_OPSET} to {newest}")
    if dtype not in DTYPES:
        raise ExportError(f"--dtype: {dtype!r} is not supported; choose {' or '.join(DTYPES)}")
    _check_exportable(predictor)
    g = Graph(np.dtype(dtype), opset)
    x = _images(g, _preprocessing(g, predictor.preprocessor), predictor.model.input_shape)
    for i, layer in enumerate(predictor.model.layers):
        g.scope = f"layer{i}"
        x = LAYER_NODES[type(layer)](g, layer, x, i)
    g.scope = "output"
    outputs = _outputs(g, x, predictor)
    n_features = predictor.data.n_features
    graph = helper.make_graph(
        g.nodes, predictor.exp.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", n_features])],
        outputs, g.initializers)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="nnback",
                              producer_version=nnback.__version__,
                              ir_version=helper.find_min_ir_version_for(opsets))
    model.doc_string = f"{predictor.exp.name}: {predictor.data.task}, exported by nnback"
    add_metadata(model, _metadata(predictor))
    onnx.checker.check_model(model, full_check=True)
    return model


def _preprocessing(g: Graph, preprocessor) -> str:
    """``(input - shift) * scale`` in float32 (each step left out where it changes nothing),
    then a Cast to the graph's dtype."""
    g.scope = "preprocess"
    x = "input"
    if np.any(preprocessor.shift != 0):
        x = g.node("Sub", [x, g.const(preprocessor.shift, np.float32)])
    if np.any(preprocessor.scale != 1):
        x = g.node("Mul", [x, g.const(preprocessor.scale, np.float32)])
    if g.dtype != np.float32:
        x = g.node("Cast", [x], to=_ELEM_TYPE[g.dtype])
    return x


def _images(g: Graph, x: str, input_shape) -> str:
    """Rows (N, D) reshaped to the images (N, C, H, W) a ConvNet's first layer takes."""
    if input_shape is None:
        return x
    g.scope = "images"
    return g.node("Reshape", [x, g.const([-1, *input_shape], np.int64)])


def _outputs(g: Graph, scores: str, predictor) -> list:
    """Append the output nodes for scores (N, K); return the graph's output ValueInfos."""
    kind = output_kind(predictor.exp.loss.type)
    n = predictor.data.n_outputs
    if kind == "values":
        _float32(g, scores, "values")
        return [helper.make_tensor_value_info("values", TensorProto.FLOAT, ["N", n])]
    if kind == "softmax":
        proba = g.node("Softmax", [scores], axis=1)
        g.node("ArgMax", [scores], out="label", axis=1, keepdims=0)
    else:  # one logit s: probabilities [1 - sigmoid(s), sigmoid(s)], label s > 0
        p = g.node("Sigmoid", [scores])
        proba = g.node("Concat", [g.node("Sub", [g.const(1.0), p]), p], axis=1)
        positive = g.node("Squeeze", [g.node("Greater", [scores, g.const(0.0)]),
                                      g.const([1], np.int64)])
        g.node("Cast", [positive], out="label", to=TensorProto.INT64)
    _float32(g, proba, "probabilities")
    return [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])]


def _float32(g: Graph, x: str, name: str) -> str:
    """``x`` as the float32 graph output ``name``."""
    if g.dtype == np.float32:
        return g.node("Identity", [x], out=name)
    return g.node("Cast", [x], out=name, to=TensorProto.FLOAT)


def add_metadata(model: onnx.ModelProto, entries: dict) -> None:
    """Set the model's metadata entries ``entries`` (values as strings), keeping the others."""
    props = {p.key: p.value for p in model.metadata_props}
    props.update((k, str(v)) for k, v in entries.items())
    helper.set_model_props(model, props)


def _metadata(predictor) -> dict:
    """Task, class names (a JSON list), loss, preprocessing, nnback version and config hash."""
    exp = predictor.exp
    meta = {
        "task": predictor.data.task,
        "classes": json.dumps(predictor.classes) if predictor.classes is not None else None,
        "loss": exp.loss.type,
        "preprocess": predictor.preprocessor.kind,
        "nnback_version": nnback.__version__,
        "config_hash": config_hash(exp.model_dump(mode="json")),
    }
    return {k: v for k, v in meta.items() if v is not None}


def config_hash(config: dict) -> str:
    """SHA-256 (hex) of a resolved config as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
