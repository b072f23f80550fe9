"""``nnback export``: every layer, preprocessing and output kind as an ONNX graph that gives
nnback's own predictions in ONNX Runtime; the shipped runs end to end; refusals."""

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import nnback
from nnback.cli import app
from nnback.config import Experiment, load_config
from nnback.data import DataMeta, Preprocessor
from nnback.data.builtin import load_digits
from nnback.errors import ExportError
from nnback.layers import (
    GELU,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Layer,
    LayerNorm,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Softplus,
    Tanh,
)
from nnback.model import Sequential
from nnback.runfolder.saved_model import Predictor

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from nnback.onnx_graph import LAYER_NODES, add_metadata, build_onnx, config_hash  # noqa: E402

REPO = Path(__file__).parent.parent
D, HIDDEN = 6, 7
EXPERIMENT = {"name": "export", "data": {"source": "spiral"}, "model": {"mlp": {"hidden": [4]}},
              "optimizer": {"type": "sgd", "lr": 0.1}}
LOSS_OUTPUTS = {"softmax_cross_entropy": 3, "bce_with_logits": 1, "mse": 2}
PREPROCESS = {"none": None, "standardize": None, "minmax": None, "scale": 0.25}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def raw_rows(n, seed=0, width=D):
    """Raw rows whose features differ in offset and scale, so preprocessing matters."""
    rng = np.random.default_rng(seed)
    scale, offset = np.resize([1, 3, 10, 0.5, 2, 1], width), np.resize([0, 5, -20, 1, 0, 100], width)
    return (rng.normal(size=(n, width)) * scale + offset).astype(np.float32)


def predictor_for(hidden_layers, loss="softmax_cross_entropy", preprocess="standardize",
                  dtype=np.float32, seed=0, input_shape=None) -> Predictor:
    """Linear(D, HIDDEN), ``hidden_layers``, Linear(HIDDEN, outputs); or, with
    ``input_shape`` (C, H, W), ``hidden_layers`` on the images (a Flatten added where they
    end in images), then Linear(flat size, outputs). Random parameters and statistics,
    preprocessing fitted on raw rows."""
    rng = np.random.default_rng(seed)
    if input_shape is None:
        layers, shape = [Linear(D, HIDDEN, dtype=dtype, rng=rng), *hidden_layers], (HIDDEN,)
    else:
        layers, shape = list(hidden_layers), input_shape
        for layer in layers:
            shape = layer.output_shape(shape)
        if len(shape) > 1:
            layers.append(Flatten())
    layers.append(Linear(math.prod(shape), LOSS_OUTPUTS[loss], dtype=dtype, rng=rng))
    model = Sequential(layers, input_shape)
    for layer in layers:
        for name, array in {**layer.params, **layer.buffers}.items():
            base = {"gamma": 1.0, "running_var": 1.5}.get(name, 0.0)
            array[...] = base + rng.uniform(-0.5, 0.5, array.shape)
    classification = loss != "mse"
    n_features = D if input_shape is None else math.prod(input_shape)
    data = DataMeta("classification" if classification else "regression",
                    ["a", "b", "c"][:max(2, LOSS_OUTPUTS[loss])] if classification else None, n_features,
                    2 if loss == "bce_with_logits" else LOSS_OUTPUTS[loss],
                    shape=None if input_shape is None else list(input_shape))
    prep = Preprocessor(preprocess, PREPROCESS[preprocess]).fit(raw_rows(200, seed=1, width=n_features))
    exp = Experiment.model_validate({**EXPERIMENT, "loss": loss})
    return Predictor(model, prep, data, exp)


def run_onnx(model, X):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": X}), strict=True))


def assert_same_predictions(predictor, model, X):
    got = run_onnx(model, X)
    if predictor.data.task == "regression":
        assert set(got) == {"values"}
        assert got["values"].dtype == np.float32
        np.testing.assert_allclose(got["values"], predictor.predict(X), rtol=1e-5, atol=1e-5)
        return
    assert set(got) == {"probabilities", "label"}
    assert got["probabilities"].dtype == np.float32 and got["label"].dtype == np.int64
    np.testing.assert_allclose(got["probabilities"], predictor.predict_proba(X), rtol=0, atol=1e-5)
    labels = np.asarray(predictor.classes)[got["label"]]
    np.testing.assert_array_equal(labels, predictor.predict(X))


LAYERS = {
    "relu": lambda dtype: [ReLU()],
    "leaky_relu": lambda dtype: [LeakyReLU(0.2)],
    "sigmoid": lambda dtype: [Sigmoid()],
    "tanh": lambda dtype: [Tanh()],
    "gelu": lambda dtype: [GELU()],
    "softplus": lambda dtype: [Softplus()],
    "softplus_beta_threshold": lambda dtype: [Softplus(beta=2.0, threshold=1.0)],
    "layernorm": lambda dtype: [LayerNorm(HIDDEN, eps=1e-3, dtype=dtype)],
    "batchnorm": lambda dtype: [BatchNorm1d(HIDDEN, eps=1e-3, dtype=dtype)],
    "dropout": lambda dtype: [Dropout(0.5)],
    "linear_no_bias": lambda dtype: [Linear(HIDDEN, HIDDEN, bias=False, dtype=dtype), Tanh()],
}


IMAGE = (2, 7, 6)
IMAGE_LAYERS = {
    "conv2d": lambda dtype: [Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), dtype=dtype), ReLU()],
    "conv2d_1x1_no_bias": lambda dtype: [Conv2d(2, 4, 1, bias=False, dtype=dtype), Tanh()],
    "maxpool2d": lambda dtype: [Conv2d(2, 3, 3, padding=1, dtype=dtype), MaxPool2d(2)],
    "maxpool2d_stride": lambda dtype: [MaxPool2d(3, stride=2)],
    "avgpool2d": lambda dtype: [AvgPool2d((2, 3), stride=1)],
    "global_avgpool2d": lambda dtype: [Conv2d(2, 5, 3, dtype=dtype), GlobalAvgPool2d()],
    "batchnorm2d": lambda dtype: [BatchNorm2d(2, eps=1e-3, dtype=dtype), ReLU()],
    "activations_on_images": lambda dtype: [Conv2d(2, 3, 3, dtype=dtype), LeakyReLU(0.1), GELU(), Softplus(),
                                            Sigmoid(), Dropout(0.3)],
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(IMAGE_LAYERS))
def test_every_image_layer_gives_nnback_predictions(name, dtype):
    """A float64 model too, as a float32 graph: ONNX Runtime has no float64 Conv or AveragePool."""
    predictor = predictor_for(IMAGE_LAYERS[name](dtype), dtype=dtype, input_shape=IMAGE)
    model = build_onnx(predictor)
    assert "Reshape" in [n.op_type for n in model.graph.node[:4]]  # after Sub, Mul (Cast): rows to images
    assert_same_predictions(predictor, model, raw_rows(32, seed=6, width=math.prod(IMAGE)))


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_gives_nnback_predictions(name, opset):
    predictor = predictor_for(LAYERS[name](np.float32))
    model = build_onnx(predictor, opset=opset)
    assert_same_predictions(predictor, model, raw_rows(64, seed=2))


def test_every_layer_class_has_an_entry():
    classes = {getattr(nnback.layers, name) for name in nnback.layers.__all__} - {Layer}
    assert classes == set(LAYER_NODES)


def test_gelu_is_the_tanh_form_at_every_opset():
    ops = {opset: {n.op_type for n in build_onnx(predictor_for([GELU()]), opset=opset).graph.node}
           for opset in (17, 20)}
    assert "Gelu" not in ops[17] and "Tanh" in ops[17]
    gelu = next(n for n in build_onnx(predictor_for([GELU()]), opset=20).graph.node if n.op_type == "Gelu")
    assert onnx.helper.get_attribute_value(gelu.attribute[0]) == b"tanh"


@pytest.mark.parametrize("kind", sorted(PREPROCESS))
def test_every_preprocessing_kind(kind):
    predictor = predictor_for([ReLU()], preprocess=kind)
    model = build_onnx(predictor)
    ops = [n.op_type for n in model.graph.node]
    assert ("Sub" in ops) == (kind in ("standardize", "minmax"))
    assert ("Mul" in ops) == (kind != "none")
    assert_same_predictions(predictor, model, raw_rows(64, seed=3))


@pytest.mark.parametrize("loss", sorted(LOSS_OUTPUTS))
def test_every_output_kind(loss):
    predictor = predictor_for([Tanh(), LayerNorm(HIDDEN)], loss=loss)
    model = build_onnx(predictor)
    assert_same_predictions(predictor, model, raw_rows(64, seed=4))


def test_binary_label_follows_the_logit_sign_at_a_tie():
    predictor = predictor_for([ReLU()], loss="bce_with_logits")
    last = predictor.model.layers[-1]
    last.params["W"][...] = 0
    last.params["b"][...] = [0.0]
    got = run_onnx(build_onnx(predictor), raw_rows(4))
    np.testing.assert_array_equal(got["label"], [0, 0, 0, 0])
    np.testing.assert_array_equal(got["probabilities"], np.full((4, 2), 0.5, np.float32))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse"])
def test_float64_model(dtype, loss):
    layers = [BatchNorm1d(HIDDEN, dtype=np.float64), GELU(), LayerNorm(HIDDEN, dtype=np.float64), Softplus()]
    predictor = predictor_for(layers, loss=loss, dtype=np.float64)
    model = build_onnx(predictor, dtype=dtype)
    weights = {t.name: t.data_type for t in model.graph.initializer if t.name == "0.W"}
    assert weights == {"0.W": onnx.TensorProto.DOUBLE if dtype == "float64" else onnx.TensorProto.FLOAT}
    assert_same_predictions(predictor, model, raw_rows(64, seed=5))


def test_unsupported_layer_is_named():
    class Swish(Layer):
        def forward(self, x, training=True, out=None):
            return x / (1 + np.exp(-x))

    predictor = predictor_for([Swish()])
    with pytest.raises(ExportError, match=r"layer 1 \(Swish\(\)\) cannot be exported to ONNX"):
        build_onnx(predictor)


def test_metadata_and_names():
    predictor = predictor_for([ReLU()])
    model = build_onnx(predictor)
    add_metadata(model, {"test_accuracy": "0.5"})
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["classes"]) == ["a", "b", "c"]
    assert meta["config_hash"] == config_hash(predictor.exp.model_dump(mode="json"))
    assert meta["test_accuracy"] == "0.5" and meta["task"] == "classification"
    assert [i.name for i in model.graph.input] == ["input"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert (dims[0].dim_param, dims[1].dim_value) == ("N", D)
    assert not {"ZipMap", "Dropout"} & {n.op_type for n in model.graph.node}


# -- the command on trained runs ----------------------------------------------------------


SHIPPED = ("digits-mlp", "digits-cnn", "iris-csv", "sine-regression")


@pytest.fixture(scope="module")
def shipped_runs(tmp_path_factory):
    """Run folders of the shipped digits (MLP and ConvNet), iris and sine configs trained for 2 epochs."""
    folder = tmp_path_factory.mktemp("shipped")
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)
        for name in SHIPPED:
            result = invoke("train", f"config/{name}.yaml", "--set", "train.epochs=2",
                            "--out", folder / name, "-q")
            assert result.exit_code == 0, result.output
            runs[name] = folder / name
    return runs


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_run_end_to_end(shipped_runs, in_repo, name, tmp_path):
    out = tmp_path / "model.onnx"
    result = invoke("export", shipped_runs[name], "-o", out, "--check")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out} (")
    assert "checked with onnxruntime" in result.stdout and "on the test split" in result.stdout
    model = onnx.load(out)
    meta = {p.key: p.value for p in model.metadata_props}
    predictor = nnback.load(shipped_runs[name])
    evaluated = json.loads(invoke("eval", shipped_runs[name], "--format", "json").stdout)
    assert float(meta["test_loss"]) == pytest.approx(evaluated["test_loss"], rel=1e-5)
    exp = load_config(REPO / "config" / f"{name}.yaml", ["train.epochs=2"])
    assert meta["config_hash"] == config_hash(exp.model_dump(mode="json"))
    if name == "sine-regression":
        assert "classes" not in meta
    else:
        assert json.loads(meta["classes"]) == predictor.classes
        assert float(meta["test_accuracy"]) == pytest.approx(evaluated["test_accuracy"])
    X = raw_rows(5)[:, :predictor.data.n_features] if not name.startswith("digits") else (
        load_digits().X[:50].astype(np.float32))
    assert_same_predictions(predictor, model, X)


def test_iris_labels_are_the_species(shipped_runs, in_repo, tmp_path):
    out = tmp_path / "iris.onnx"
    assert invoke("export", shipped_runs["iris-csv"], "-o", out).exit_code == 0
    model = onnx.load(out)
    classes = json.loads({p.key: p.value for p in model.metadata_props}["classes"])
    assert classes == ["setosa", "versicolor", "virginica"]
    rows = np.loadtxt(REPO / "data" / "iris.csv", delimiter=",", skiprows=1, usecols=range(4),
                      dtype=np.float32)
    got = run_onnx(model, rows)
    predicted = [classes[i] for i in got["label"]]
    assert predicted == list(nnback.load(shipped_runs["iris-csv"]).predict(rows))


def test_default_file_next_to_the_weights(shipped_runs, in_repo, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(shipped_runs["sine-regression"], run)
    assert invoke("export", run).exit_code == 0
    assert (run / "model.onnx").is_file()
    assert invoke("export", run / "checkpoints" / "last.npz").exit_code == 0
    assert (run / "checkpoints" / "last.onnx").is_file()


def test_check_on_a_data_file(shipped_runs, in_repo, tmp_path):
    out = tmp_path / "iris.onnx"
    result = invoke("export", shipped_runs["iris-csv"], "-o", out, "--data", "data/iris.csv")
    assert result.exit_code == 0, result.output
    assert "on data/iris.csv (150 rows)" in result.stdout


def test_disagreement_fails_and_writes_nothing(shipped_runs, in_repo, tmp_path, monkeypatch):
    monkeypatch.setitem(LAYER_NODES, ReLU, LAYER_NODES[Sigmoid])
    out = tmp_path / "digits.onnx"
    result = invoke("export", shipped_runs["digits-mlp"], "-o", out)
    assert result.exit_code == 1
    assert "disagree beyond float32 rounding" in result.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_hinge_loss_is_refused(tmp_path, write_config, in_repo):
    cfg = write_config({"loss": "hinge", "train": {"epochs": 1}})
    assert invoke("train", cfg, "--out", tmp_path / "run", "-q").exit_code == 0
    out = tmp_path / "hinge.onnx"
    result = invoke("export", tmp_path / "run", "-o", out)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        ("error: loss 'hinge' gives scores that are neither probabilities nor values; "
         "export supports softmax_cross_entropy, bce_with_logits, mse")]
    assert not out.exists()


@pytest.mark.parametrize("opset", ["16", "99"])
def test_unsupported_opset(shipped_runs, in_repo, tmp_path, opset):
    out = tmp_path / "m.onnx"
    result = invoke("export", shipped_runs["sine-regression"], "-o", out, "--opset", opset)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: --opset: {opset} is not supported; choose 17 to ")
    assert not out.exists()


def test_missing_onnx_names_the_install(shipped_runs, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    result = invoke("export", shipped_runs["sine-regression"], "-o", tmp_path / "m.onnx")
    assert result.exit_code == 2
    assert result.stderr == 'error: export needs the onnx package: pip install -e ".[onnx]"\n'


def test_missing_onnxruntime(shipped_runs, in_repo, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = invoke("export", shipped_runs["sine-regression"], "-o", tmp_path / "m.onnx", "--check")
    assert result.exit_code == 2
    assert "export needs the onnxruntime package" in result.stderr
    result = invoke("export", shipped_runs["sine-regression"], "-o", tmp_path / "m.onnx")
    assert result.exit_code == 0
    assert "not checked: onnxruntime is not installed" in result.stdout
    assert (tmp_path / "m.onnx").is_file()


def test_tolerance_is_float32_rounding():
    from nnback.commands.export import Comparison

    assert Comparison("rows", 10, 2e-6, 1.0, 10, 0).ok
    assert not Comparison("rows", 10, 2e-5, 1.0, 10, 0).ok
    assert Comparison("rows", 10, 2e-6, 1.0, 9, 1).ok  # one near tie decided the other way
    assert not Comparison("rows", 10, 2e-6, 1.0, 9, 0).ok
    assert Comparison("rows", 10, 5e-3, 1000.0, None, 0).ok  # values, relative to their size
    assert not Comparison("rows", 10, 5e-3, 10.0, None, 0).ok


def test_float64_run_without_a_test_split(tmp_path, write_config, in_repo):
    cfg = write_config({"model": {"dtype": "float64"}, "train": {"epochs": 2}})
    assert invoke("train", cfg, "--out", tmp_path / "run", "-q").exit_code == 0
    out = tmp_path / "f64.onnx"
    result = invoke("export", tmp_path / "run", "-o", out, "--dtype", "float64", "--check")
    assert result.exit_code == 0, result.output
    assert "opset 17, float64)" in result.stdout and "on the val split (30 rows)" in result.stdout
    model = onnx.load(out)
    assert {t.data_type for t in model.graph.initializer if "." in t.name} == {onnx.TensorProto.DOUBLE}
    assert not any(p.key.startswith("test_") for p in model.metadata_props)
