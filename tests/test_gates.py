import math

import pytest

from nnback.gates import Add, Max, Multiply, Sigmoid


def test_add_multiply_circuit():
    """f = (x + y) * z at x = -2, y = 5, z = -4."""
    add, mul = Add(), Multiply()
    q = add.forward(-2.0, 5.0)
    f = mul.forward(q, -4.0)
    dq, dz = mul.backward(1.0)
    dx, dy = add.backward(dq)
    assert (q, f) == (3.0, -12.0)
    assert (dx, dy, dz) == (-4.0, -4.0, 3.0)


def test_sigmoid_neuron():
    """f = sigmoid(w0*x0 + w1*x1 + w2) at w = [2, -3, -3], x = [-1, -2]."""
    w, x = [2.0, -3.0, -3.0], [-1.0, -2.0]
    mul0, mul1, add0, add1, sig = Multiply(), Multiply(), Add(), Add(), Sigmoid()
    dot = add1.forward(add0.forward(mul0.forward(w[0], x[0]), mul1.forward(w[1], x[1])), w[2])
    f = sig.forward(dot)
    ddot = sig.backward(1.0)
    dsum, dw2 = add1.backward(ddot)
    dp0, dp1 = add0.backward(dsum)
    dw0, dx0 = mul0.backward(dp0)
    dw1, dx1 = mul1.backward(dp1)

    assert dot == 1.0
    assert round(f, 2) == 0.73 and round(ddot, 2) == 0.20
    assert [round(v, 2) for v in (dx0, dx1)] == [0.39, -0.59]
    assert [round(v, 2) for v in (dw0, dw1, dw2)] == [-0.20, -0.39, 0.20]
    s = 1 / (1 + math.exp(-1.0))
    local = s * (1 - s)
    assert f == pytest.approx(s, rel=1e-15) and ddot == pytest.approx(local, rel=1e-15)
    assert (dx0, dx1) == pytest.approx((2 * local, -3 * local), rel=1e-15)
    assert (dw0, dw1, dw2) == pytest.approx((-local, -2 * local, local), rel=1e-15)


def test_multiply_add_max_circuit():
    """f = 2 * (x*y + max(z, w)) at x = 3, y = -4, z = 2, w = -1."""
    mul, mx, add, double = Multiply(), Max(), Add(), Multiply()
    f = double.forward(add.forward(mul.forward(3.0, -4.0), mx.forward(2.0, -1.0)), 2.0)
    dsum, _ = double.backward(1.0)
    dprod, dmax = add.backward(dsum)
    dx, dy = mul.backward(dprod)
    dz, dw = mx.backward(dmax)
    assert f == -20.0
    assert (dx, dy, dz, dw) == (-8.0, 6.0, 2.0, 0.0)


def test_max_routes_to_the_larger_input():
    gate = Max()
    assert gate.forward(-3.0, 1.0) == 1.0
    assert gate.backward(5.0) == (0.0, 5.0)


def test_sigmoid_gate_is_stable():
    gate = Sigmoid()
    assert gate.forward(-1000.0) == 0.0 and gate.backward(1.0) == 0.0
    assert gate.forward(1000.0) == 1.0


@pytest.mark.parametrize("gate", [Add, Multiply, Max, Sigmoid])
def test_backward_before_forward_raises(gate):
    with pytest.raises(RuntimeError, match=f"{gate.__name__}.backward called before forward"):
        gate().backward(1.0)
