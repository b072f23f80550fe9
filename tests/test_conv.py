"""Image layers: exact gradients, the same numbers as PyTorch, shapes and buffer reuse."""

import numpy as np
import pytest

from nnback.gradcheck import check_layer, check_model
from nnback.layers import (
    GELU,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Tanh,
)
from nnback.losses import SoftmaxCrossEntropy
from nnback.model import Sequential
from nnback.optim import SGD

# name: (layer factory, input shape); awkward on purpose: batch 1, one channel, odd and
# rectangular sizes, stride 2 with padding, a 1x1 kernel, a kernel as large as the input
CASES = {
    "conv-batch1-one-channel": (lambda rng: Conv2d(1, 2, 3, dtype=np.float64, rng=rng), (1, 1, 5, 5)),
    "conv-stride2-padding": (lambda rng: Conv2d(3, 2, 3, stride=2, padding=1, dtype=np.float64, rng=rng),
                             (2, 3, 7, 5)),
    "conv-rectangular": (lambda rng: Conv2d(2, 3, (2, 3), stride=(1, 2), padding=(1, 0),
                                            dtype=np.float64, rng=rng), (2, 2, 5, 6)),
    "conv-1x1-no-bias": (lambda rng: Conv2d(3, 4, 1, bias=False, dtype=np.float64, rng=rng), (2, 3, 3, 4)),
    "conv-kernel-is-input": (lambda rng: Conv2d(2, 3, (4, 3), dtype=np.float64, rng=rng), (3, 2, 4, 3)),
    "conv-padding-2-xavier": (lambda rng: Conv2d(1, 2, 3, padding=2, init="xavier_uniform",
                                                 dtype=np.float64, rng=rng), (2, 1, 3, 4)),
    "maxpool-2": (lambda rng: MaxPool2d(2), (2, 3, 4, 6)),
    "maxpool-odd-overlapping": (lambda rng: MaxPool2d(3, stride=2), (1, 1, 7, 5)),
    "maxpool-rectangular": (lambda rng: MaxPool2d((2, 3), stride=1), (2, 2, 3, 5)),
    "maxpool-uncovered-edge": (lambda rng: MaxPool2d(2), (1, 2, 5, 5)),
    "avgpool-2": (lambda rng: AvgPool2d(2), (2, 3, 4, 6)),
    "avgpool-odd-overlapping": (lambda rng: AvgPool2d(3, stride=2), (1, 1, 7, 5)),
    "avgpool-rectangular": (lambda rng: AvgPool2d((2, 3), stride=(1, 2)), (2, 2, 3, 7)),
    "global-avgpool": (lambda rng: GlobalAvgPool2d(), (3, 2, 3, 5)),
    "global-avgpool-1x1": (lambda rng: GlobalAvgPool2d(), (1, 1, 1, 1)),
    "flatten": (lambda rng: Flatten(), (2, 3, 2, 5)),
    "batchnorm2d": (lambda rng: BatchNorm2d(3, dtype=np.float64), (2, 3, 3, 4)),
    "batchnorm2d-batch1": (lambda rng: BatchNorm2d(2, dtype=np.float64), (1, 2, 3, 3)),
    "relu": (lambda rng: ReLU(), (2, 3, 4, 5)),
    "leaky_relu": (lambda rng: LeakyReLU(0.1), (2, 3, 4, 5)),
    "sigmoid": (lambda rng: Sigmoid(), (2, 3, 4, 5)),
    "tanh": (lambda rng: Tanh(), (2, 3, 4, 5)),
    "gelu": (lambda rng: GELU(), (2, 3, 4, 5)),
    "dropout": (lambda rng: Dropout(0.3, rng=rng), (2, 3, 4, 5)),
}


def make(name, seed=0):
    """Layer ``name`` with randomised parameters and running statistics."""
    rng = np.random.default_rng(seed)
    factory, shape = CASES[name]
    layer = factory(rng)
    for p in layer.params.values():
        p[...] = rng.standard_normal(p.shape)
    if isinstance(layer, BatchNorm2d):
        layer.buffers["running_mean"][...] = rng.standard_normal(layer.num_features)
        layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, layer.num_features)
    return layer, shape


MODES = [pytest.param(name, True, id=f"{name}-train") for name in CASES] + [
    pytest.param(name, False, id=f"{name}-eval")  # the others are the same in both modes
    for name in CASES if name.startswith(("batchnorm", "dropout"))]


@pytest.mark.parametrize("name, training", MODES)
def test_gradient_check(name, training):
    layer, shape = make(name)
    rng = np.random.default_rng(1)
    errors = check_layer(layer, rng.standard_normal(shape) * 2, rng, training=training)
    assert set(errors) == {"x", *layer.params}
    tolerance = 1e-6 if name.startswith("batchnorm") else 1e-7
    assert all(err < tolerance for err in errors.values()), errors


def small_convnet(rng, dtype=np.float64):
    layers = [Conv2d(2, 3, 3, padding=1, dtype=dtype, rng=rng), BatchNorm2d(3, dtype=dtype), ReLU(),
              MaxPool2d(2), Conv2d(3, 4, (2, 1), dtype=dtype, rng=rng), Tanh(), AvgPool2d((1, 2)),
              Flatten(), Linear(8, 3, dtype=dtype, rng=rng)]
    return Sequential(layers, input_shape=(2, 6, 5))


def test_model_gradient_check_on_flat_rows():
    rng = np.random.default_rng(3)
    model = small_convnet(rng)
    x = rng.standard_normal((4, 60))
    errors = check_model(model, SoftmaxCrossEntropy(), x, rng.integers(0, 3, 4))
    assert set(errors) == {"x", *(name for name, _, _ in model.parameters())}
    assert all(err < 1e-6 for err in errors.values()), errors


def test_sequential_reshapes_rows_and_returns_dx_like_its_input():
    rng = np.random.default_rng(4)
    model = small_convnet(rng)
    x = rng.standard_normal((4, 60))
    scores = model.forward(x)
    assert scores.shape == (4, 3)
    assert model.backward(np.ones_like(scores)).shape == (4, 60)
    assert model.backward(np.ones_like(scores), input_grad=False) is None
    images = x.reshape(4, 2, 6, 5)
    np.testing.assert_array_equal(model.forward(images), scores)
    assert model.backward(np.ones_like(scores)).shape == (4, 2, 6, 5)


def test_kernels_live_in_the_packed_parameter_array():
    model = small_convnet(np.random.default_rng(5), np.float32)
    flat = model.layers[0].params["W"].base
    for name, param, _ in model.parameters():
        assert np.shares_memory(param, flat), name
    assert model.layers[0].params["W"].shape == (3, 2, 3, 3)
    assert model.layers[0].grads["W"].shape == (3, 2, 3, 3)


def test_training_steps_reuse_their_arrays():
    """The convolution's im2col matrices outlive a training step; an evaluation pass
    leaves them alone; a step with a new batch size makes new ones."""
    rng = np.random.default_rng(6)
    model = small_convnet(rng, np.float32)
    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9)
    conv = model.layers[0]

    def step(n):
        _, dscores = SoftmaxCrossEntropy()(model.forward(rng.standard_normal((n, 60))),
                                          rng.integers(0, 3, n))
        model.backward(dscores, input_grad=False)
        optimizer.step()
        return conv._workspace, conv._workspace.cols

    first = step(8)
    model.forward(rng.standard_normal((50, 60)), training=False)  # evaluation keeps nothing
    second = step(8)
    assert all(a is b for a, b in zip(first, second, strict=True))
    assert step(5)[1] is not first[1]


@pytest.mark.parametrize("layer, shape, message", [
    (Conv2d(1, 4, 5), (1, 4, 4), r"the 5x5 window is larger than its input 4x4; input \(N, 1, 4, 4\)"),
    (Conv2d(1, 4, 7, padding=1), (1, 4, 4),
     r"the 7x7 window is larger than its input 6x6 \(padding 1x1\)"),
    (Conv2d(3, 4, 3), (2, 8, 8), "expects 3 input channels, got 2"),
    (Conv2d(1, 4, 3), (64,), r"needs images \(N, C, H, W\), got \(N, 64\)"),
    (MaxPool2d(2), (16, 1, 1), r"the 2x2 window is larger than its input 1x1; input \(N, 16, 1, 1\)"),
    (AvgPool2d((1, 3)), (4, 5, 2), "the 1x3 window is larger than its input 5x2"),
    (GlobalAvgPool2d(), (10,), "needs images"),
    (BatchNorm2d(3), (4, 2, 2), "expects 3 channels, got 4"),
    (Linear(16, 10), (16, 4, 4), r"Linear needs flat input \(N, D\), got \(N, 16, 4, 4\): flatten it first"),
])
def test_shapes_that_cannot_work_name_the_layer_and_shapes(layer, shape, message):
    with pytest.raises(ValueError, match=message):
        layer.output_shape(shape)


@pytest.mark.parametrize("layer, shape, out", [
    (Conv2d(3, 8, 3, stride=2, padding=1), (3, 7, 5), (8, 4, 3)),
    (Conv2d(1, 2, (4, 3)), (1, 4, 3), (2, 1, 1)),
    (MaxPool2d(3, stride=2), (2, 7, 6), (2, 3, 2)),
    (GlobalAvgPool2d(), (5, 3, 3), (5,)),
    (Flatten(), (5, 3, 2), (30,)),
    (ReLU(), (5, 3, 2), (5, 3, 2)),
])
def test_output_shape(layer, shape, out):
    assert layer.output_shape(shape) == out
    x = np.zeros((2, *shape), np.float32)
    assert layer.forward(x).shape == (2, *out)


@pytest.mark.parametrize("name", [n for n in CASES if not n.startswith(("relu", "leaky", "sigmoid",
                                                                        "tanh", "gelu", "dropout"))])
def test_backward_before_forward_raises(name):
    layer, shape = make(name)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones(shape))


@pytest.mark.parametrize("name", ["conv-stride2-padding", "batchnorm2d"])
def test_without_input_grad_the_same_grads_and_no_dx(name):
    layer, shape = make(name)
    x = np.random.default_rng(7).standard_normal(shape)
    dout = np.random.default_rng(8).standard_normal(layer.forward(x).shape)
    layer.backward(dout)
    grads = {key: grad.copy() for key, grad in layer.grads.items()}
    layer.grads = {key: np.zeros_like(grad) for key, grad in grads.items()}
    assert layer.backward(dout, input_grad=False) is None
    for key, grad in grads.items():
        np.testing.assert_array_equal(layer.grads[key], grad)


# --- the same numbers as PyTorch --------------------------------------------------------


def torch_agrees(layer, torch_layer, x, training=True, rtol=1e-10):
    """Forward, dx and every parameter gradient of ``layer`` against ``torch_layer``."""
    torch = pytest.importorskip("torch")
    torch_layer.train(training)
    torch_layer.zero_grad()
    xt = torch.from_numpy(x).requires_grad_()
    out_t = torch_layer(xt)
    out = layer.forward(x, training)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=rtol, atol=rtol)
    dout = np.random.default_rng(9).standard_normal(out.shape).astype(x.dtype)
    out_t.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(layer.backward(dout), xt.grad.numpy(), rtol=rtol, atol=rtol)
    return {name: p.grad.numpy() for name, p in torch_layer.named_parameters()}


@pytest.mark.parametrize("options, shape", [
    (dict(kernel_size=3, padding=1), (4, 3, 8, 8)),
    (dict(kernel_size=3, stride=2, padding=1), (2, 3, 7, 5)),
    (dict(kernel_size=(2, 5), stride=(2, 1), padding=(0, 2)), (3, 3, 6, 7)),
    (dict(kernel_size=1, bias=False), (2, 3, 4, 4)),
    (dict(kernel_size=(5, 4)), (2, 3, 5, 4)),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv2d_agrees_with_pytorch(options, shape, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    conv = Conv2d(shape[1], 4, dtype=dtype, rng=rng, **options)
    torch_conv = torch.nn.Conv2d(shape[1], 4, **options).to(getattr(torch, np.dtype(dtype).name))
    with torch.no_grad():
        torch_conv.weight.copy_(torch.from_numpy(conv.params["W"]))
        if "b" in conv.params:
            conv.params["b"][...] = rng.standard_normal(4)
            torch_conv.bias.copy_(torch.from_numpy(conv.params["b"]))
    tol = 1e-10 if dtype == np.float64 else 2e-5
    grads = torch_agrees(conv, torch_conv, rng.standard_normal(shape).astype(dtype), rtol=tol)
    np.testing.assert_allclose(conv.grads["W"], grads["weight"], rtol=tol, atol=tol)
    if "b" in conv.params:
        np.testing.assert_allclose(conv.grads["b"], grads["bias"], rtol=tol, atol=tol)


@pytest.mark.parametrize("kernel, stride", [(2, None), (3, 2), ((2, 3), 1), (3, 1), (2, 3)])
@pytest.mark.parametrize("pool", ["MaxPool2d", "AvgPool2d"])
def test_pooling_agrees_with_pytorch_including_ties(pool, kernel, stride):
    torch = pytest.importorskip("torch")
    # small integers: many windows hold their maximum more than once
    x = np.random.default_rng(11).integers(0, 3, (2, 3, 7, 6)).astype(np.float64)
    ours = {"MaxPool2d": MaxPool2d, "AvgPool2d": AvgPool2d}[pool](kernel, stride)
    torch_agrees(ours, getattr(torch.nn, pool)(kernel, stride), x)


def test_global_avgpool_agrees_with_pytorch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(12).standard_normal((3, 4, 5, 3))
    torch_agrees(GlobalAvgPool2d(), torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()), x)


def test_batchnorm2d_agrees_with_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    ours = BatchNorm2d(3, momentum=0.2, dtype=np.float64)
    theirs = torch.nn.BatchNorm2d(3, momentum=0.2).double()
    ours.params["gamma"][...], ours.params["beta"][...] = rng.standard_normal(3), rng.standard_normal(3)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.params["gamma"]))
        theirs.bias.copy_(torch.from_numpy(ours.params["beta"]))
    for _ in range(2):  # the running statistics move twice
        grads = torch_agrees(ours, theirs, rng.standard_normal((4, 3, 5, 2)) * 3 + 1)
    np.testing.assert_allclose(ours.grads["gamma"], grads["weight"], rtol=1e-10)
    np.testing.assert_allclose(ours.grads["beta"], grads["bias"], rtol=1e-10)
    np.testing.assert_allclose(ours.buffers["running_mean"], theirs.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.buffers["running_var"], theirs.running_var.numpy(), rtol=1e-12)
    torch_agrees(ours, theirs, rng.standard_normal((2, 3, 5, 2)), training=False)
