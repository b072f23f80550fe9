"""Numerical gradient checking: compare backward with centred differences in float64.

Each check contracts the output with a random upstream gradient ``dout``, so one scalar
``sum(out * dout)`` tests every path of the Jacobian. Random layers (Dropout) have their
generator state restored before every forward pass, so all evaluations see one mask;
buffers and generator states are restored when the check ends.
"""

from contextlib import contextmanager

import numpy as np

ZERO_FLOOR = 1e-3  # gradients below this share of the check's largest count as zero


def numerical_gradient(f, x, dout, h=1e-5):
    """Centred-difference gradient of ``sum(f(x) * dout)`` with respect to x.

    Args:
        f: function of x returning an array (or scalar); may ignore its argument and
            read x through a closure, since x is perturbed in place (and restored).
        x: float64 array, contiguous.
        dout: upstream gradient, f(x)'s shape.
        h: step.
    Returns:
        grad: x's shape.
    """
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient perturbs x in place; pass a C-contiguous array")
    grad = np.zeros_like(x)
    flat, flat_grad = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = np.sum(f(x) * dout)
        flat[i] = old - h
        minus = np.sum(f(x) * dout)
        flat[i] = old
        flat_grad[i] = (plus - minus) / (2 * h)
    return grad


def rel_error(a, b, tiny=1e-30):
    """Relative error ``|a - b| / max(|a|, |b|, tiny)`` with Euclidean norms over all elements."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), tiny))


@contextmanager
def _replaying(layers):
    """Yield ``replay()``, which resets every layer's generator to its state now.

    On exit the generators and all buffers are restored as they were.
    """
    generators = [layer.rng for layer in layers
                  if isinstance(getattr(layer, "rng", None), np.random.Generator)]
    states = [g.bit_generator.state for g in generators]
    buffers = [(array, array.copy()) for layer in layers for array in layer.buffers.values()]

    def replay():
        for generator, state in zip(generators, states):
            generator.bit_generator.state = state

    try:
        yield replay
    finally:
        replay()
        for array, saved in buffers:
            np.copyto(array, saved)


def _require_float64(named_arrays):
    for name, array in named_arrays:
        if array.dtype != np.float64:
            raise ValueError(f"gradient check needs float64 arrays, {name} is {array.dtype}")


def _compare(run, x, named_params, dout, analytic, h):
    """Relative error of ``analytic[name]`` against the numerical gradient of ``run()``.

    Each error is measured against at least ``ZERO_FLOOR`` times the largest analytic
    gradient norm of the check: a gradient that is truly zero (a bias right before a
    normalisation) has a numerical estimate of pure roundoff, which would otherwise
    report as a 100% error.
    """
    floor = ZERO_FLOOR * max(float(np.linalg.norm(g)) for g in analytic.values())
    table = {}
    for name, array in [("x", x), *named_params]:
        numeric = numerical_gradient(lambda _: run(), array, dout, h)
        table[name] = rel_error(analytic[name], numeric, tiny=max(floor, 1e-30))
    return table


def check_layer(layer, x, rng, training=True, h=1e-5):
    """Check one layer's dx and every entry of its grads.

    Args:
        layer: a layer built with dtype=np.float64.
        x: float64 input, (N, D); perturbed in place during the check and restored.
        rng: np.random.Generator for the upstream gradient.
        training: the mode of every forward pass.
    Returns:
        {"x": err, "W": err, ...}: relative error of each analytic gradient.
    """
    named_params = list(layer.params.items())
    _require_float64([("x", x), *named_params])
    with _replaying([layer]) as replay:

        def run():
            replay()
            return layer.forward(x, training)

        dout = rng.standard_normal(run().shape)
        analytic = {"x": layer.backward(dout)}
        analytic.update((name, grad.copy()) for name, grad in layer.grads.items())
        return _compare(run, x, named_params, dout, analytic, h)


def check_model(model, loss, x, y, training=True, h=1e-5):
    """Check a model + loss: the gradient of the loss on x and on every parameter.

    Args:
        model: a Sequential of float64 parameters.
        loss: a loss object, ``loss(scores, y) -> (loss, dscores)``.
        x: float64 input, (N, D); perturbed in place during the check and restored.
        y: targets for ``loss``.
        training: the mode of every forward pass.
    Returns:
        {"x": err, "0.W": err, ...}: relative error of each analytic gradient.
    """
    named_params = [(name, param) for name, param, _ in model.parameters()]
    _require_float64([("x", x), *named_params])
    with _replaying(model.layers) as replay:

        def run():
            replay()
            return loss(model.forward(x, training), y)[0]

        replay()
        _, dscores = loss(model.forward(x, training), y)
        analytic = {"x": model.backward(dscores)}
        analytic.update((name, grad.copy()) for name, _, grad in model.parameters())
        return _compare(run, x, named_params, 1.0, analytic, h)


def check_loss(loss, scores, y, h=1e-5):
    """Relative error of a loss's dscores against the numerical gradient.

    Args:
        loss: a loss object, ``loss(scores, y) -> (loss, dscores)``.
        scores: float64, (N, C) or (N,); perturbed in place during the check and restored.
        y: targets for ``loss``.
    """
    _require_float64([("scores", scores)])
    analytic = {"x": loss(scores, y)[1]}
    return _compare(lambda: loss(scores, y)[0], scores, [], 1.0, analytic, h)["x"]
