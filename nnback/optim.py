"""Optimizers (SGD, Adam, AdamW, RMSprop) and global-norm gradient clipping.

Each optimizer follows the algorithm documented for its ``torch.optim`` namesake, with
the same hyperparameter names and defaults, so runs can be compared with PyTorch. The
bounds of the hyperparameters are declared in each class's ``spec`` and checked by its
constructor; the experiment file accepts exactly the same values.

An optimizer takes the model's parameters as ``(name, param, grad)`` triples (from
``Sequential.parameters()``); ``backward`` overwrites the grad arrays in place, and
``step()`` updates the param arrays in place from them. The step allocates no arrays:
state buffers and scratch space are allocated once, in each parameter's dtype, so a
float32 model stays float32. Grad arrays are only read.

State is keyed by parameter name, and ``state_dict()`` is a flat ``dict[str, ndarray]``
(``"0.W/exp_avg"``, ``"step"``) that ``np.savez`` can store; loading it into a fresh
optimizer over the same model resumes training bit-identically.

``Sequential.parameters()`` also hands over the packed arrays its parameters and
gradients are views of (``flat_params``, ``flat_grads``). The state then lives in
arrays of the same layout and a step updates the whole model at once, in blocks of
``BLOCK`` elements that stay in the CPU cache through the few element-wise operations
of an update: a few operations per block instead of per parameter, with the same
results bit for bit.

Example:
    >>> opt = Adam(model.parameters(), lr=1e-3)
    >>> loss, dscores = loss_fn(model.forward(x), y)
    >>> model.backward(dscores)
    >>> opt.step()
"""

import math

import numpy as np

from nnback.spec import Option, Spec

BLOCK = 1 << 16  # elements updated together by a packed step (256 KiB of float32)


def _lr(default):
    return Option("lr", float, default, "Learning rate (peak value when scheduled).", gt=0)


def _eps():
    return Option("eps", float, 1e-8, "Added to the denominator for stability.", gt=0)


def _weight_decay(default, doc):
    return Option("weight_decay", float, default, doc, ge=0)


def _adam_options(weight_decay):
    """Options of Adam and AdamW: the same keys, the weight decay as given."""
    return (
        _lr(1e-3),
        Option("betas", float, (0.9, 0.999), "Decay rates of the first and second moment estimates.",
               ge=0, lt=1, size=2),
        _eps(),
        weight_decay,
        Option("amsgrad", bool, False, "Use the maximum of past second moments."),
    )


def _nesterov_needs_momentum(values):
    if values.get("nesterov") and (values.get("momentum", 0) <= 0 or values.get("dampening", 0) != 0):
        return "nesterov: needs momentum > 0 and dampening 0"
    return None


class Optimizer:
    """Shared machinery: the parameter list, per-parameter state, state dict io.

    Subclasses declare their hyperparameters in ``spec`` (``nnback.spec``) and check
    them with ``self.spec.check(...)`` first thing in the constructor, list their
    per-parameter buffers in ``_buffer_names`` and implement ``_update``.

    Args:
        params: iterable of ``(name, param, grad)``; names unique, ``param`` a floating
            ndarray and ``grad`` an ndarray of the same shape and dtype. When it has
            ``flat_params`` and ``flat_grads`` attributes (``Sequential.parameters()``
            does), they are the 1-D arrays the params and grads are consecutive views
            of, in order, and a step updates them as a whole.
        lr: learning rate (>= 0); a plain attribute a schedule may set before each step.

    Attributes:
        lr: learning rate used by the next ``step()``.
        step_count: number of steps taken (saved as ``"step"``).
        state: ``{param name: {buffer name: array like param}}``, zeros at start.
    """

    def __init__(self, params, lr):
        flat_params = getattr(params, "flat_params", None)
        flat_grads = getattr(params, "flat_grads", None)
        self.params = list(params)
        _require(len(self.params) > 0, "params", "a non-empty list of parameters", self.params)
        _require(lr >= 0, "lr", ">= 0", lr)
        self.lr = lr
        self.step_count = 0
        self.state = {}
        for name, param, grad in self.params:
            _check_param(name, param, grad, self.state)
            self.state[name] = {}
        params = [param for _, param, _ in self.params]
        if flat_params is not None and flat_grads is not None:
            flat_state = {buf: np.zeros_like(flat_params) for buf in self._buffer_names()}
            for buf, flat in flat_state.items():
                for (name, _, _), view in zip(self.params, _views(flat, params)):
                    self.state[name][buf] = view
            self._blocks = _blocks(flat_params, flat_grads, flat_state)
        else:
            for name, param, _ in self.params:
                self.state[name] = {buf: np.zeros_like(param) for buf in self._buffer_names()}
            self._blocks = [(param, grad, self.state[name], *scratch) for (name, param, grad), scratch
                            in zip(self.params, _scratch_views(params))]

    def _buffer_names(self):
        """Names of the per-parameter state buffers this configuration needs."""
        raise NotImplementedError

    def _update(self, param, grad, state, tmp_a, tmp_b, lr):
        """Update ``param`` in place from ``grad``; ``tmp_a``/``tmp_b`` are scratch.

        Args:
            param: parameter array, updated in place.
            grad: its gradient, same shape; must not be written.
            state: ``{buffer name: array}`` for this parameter, updated in place.
            tmp_a, tmp_b: scratch arrays shaped like ``param``, free to overwrite.
            lr: learning rate of this step (a Python float).
        """
        raise NotImplementedError

    def step(self):
        """Take one optimization step, updating every parameter in place."""
        self.step_count += 1
        lr = float(self.lr)
        for block in self._blocks:
            self._update(*block, lr)

    def state_dict(self):
        """Copy of the optimizer state: ``{"step": int64 0-d, "<param>/<buffer>": array}``."""
        out = {"step": np.array(self.step_count, dtype=np.int64)}
        out.update((key, arr.copy()) for key, arr in self._buffers_by_key())
        return out

    def _buffers_by_key(self):
        """Yield ``("<param>/<buffer>", array)`` for every state buffer."""
        for name, buffers in self.state.items():
            for buf, arr in buffers.items():
                yield f"{name}/{buf}", arr

    def load_state_dict(self, state_dict):
        """Restore a state saved by ``state_dict()`` into the existing buffers.

        Raises:
            KeyError: a key is missing or unexpected (the message names it).
            ValueError: an array's shape does not match, or ``"step"`` is not a
                non-negative integer.
        """
        expected = {"step"} | {key for key, _ in self._buffers_by_key()}
        missing = sorted(key for key in expected if key not in state_dict)
        unexpected = [key for key in state_dict if key not in expected]
        if missing or unexpected:
            raise KeyError(
                f"optimizer state mismatch: missing keys {missing}, unexpected keys {unexpected}"
            )
        step = np.asarray(state_dict["step"])
        if step.shape != () or step.dtype.kind not in "iu" or step < 0:
            raise ValueError(f"optimizer state 'step' must be a non-negative integer, got {step!r}")
        targets = [(key, arr, np.asarray(state_dict[key]))
                   for key, arr in self._buffers_by_key()]
        for key, arr, value in targets:
            if value.shape != arr.shape:
                raise ValueError(
                    f"optimizer state {key!r} has shape {value.shape}, expected {arr.shape}"
                )
        for _, arr, value in targets:
            np.copyto(arr, value)
        self.step_count = int(step)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and weight decay.

    Per step t (1-based), with g the gradient::

        g = g + weight_decay * p                       if weight_decay != 0
        b = g (t == 1), else momentum * b + (1 - dampening) * g   if momentum != 0
        g = g + momentum * b if nesterov, else b       if momentum != 0
        p = p - lr * g

    Args:
        params: ``(name, param, grad)`` triples.
        lr: learning rate (> 0).
        momentum: momentum factor, in [0, 1).
        dampening: dampening of the momentum, in [0, 1]; must be 0 with Nesterov.
        weight_decay: L2 penalty added to the gradient (>= 0).
        nesterov: Nesterov momentum; requires ``momentum > 0``.

    State: ``momentum_buffer`` per parameter when ``momentum != 0``.
    """

    spec = Spec(
        name="sgd", doc="Stochastic gradient descent (torch.optim.SGD).",
        options=(
            _lr(1e-2),
            Option("momentum", float, 0.0, "Momentum factor.", ge=0, lt=1),
            Option("dampening", float, 0.0, "Dampening of the momentum buffer.", ge=0, le=1),
            Option("nesterov", bool, False, "Nesterov momentum (needs momentum > 0, dampening 0)."),
            _weight_decay(0.0, "L2 penalty added to the gradient."),
        ),
        rules=(_nesterov_needs_momentum,),
    )

    def __init__(self, params, lr=1e-2, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        self.spec.check(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov)
        self.momentum = float(momentum)
        self.dampening = float(dampening)
        self.weight_decay = float(weight_decay)
        self.nesterov = bool(nesterov)
        super().__init__(params, lr)

    def _buffer_names(self):
        return ("momentum_buffer",) if self.momentum != 0 else ()

    def _update(self, param, grad, state, tmp_a, tmp_b, lr):
        d_p = _with_l2(param, grad, self.weight_decay, tmp_a)
        if self.momentum != 0:
            buf = state["momentum_buffer"]
            if self.step_count == 1:
                np.copyto(buf, d_p)
            else:
                buf *= self.momentum
                if self.dampening != 0:
                    np.multiply(d_p, 1 - self.dampening, out=tmp_b)
                    buf += tmp_b
                else:
                    buf += d_p
            if self.nesterov:
                np.multiply(buf, self.momentum, out=tmp_b)
                tmp_b += d_p
                d_p = tmp_b
            else:
                d_p = buf
        np.multiply(d_p, -lr, out=tmp_b)
        param += tmp_b


class Adam(Optimizer):
    """Adam, optionally AMSGrad, with L2 weight decay added to the gradient.

    Per step t (1-based), with g the gradient::

        g = g + weight_decay * p                       if weight_decay != 0
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        v_max = max(v_max, v); v_used = v_max if amsgrad, else v
        p = p - lr / (1 - beta1**t) * m / (sqrt(v_used) / sqrt(1 - beta2**t) + eps)

    Args:
        params: ``(name, param, grad)`` triples.
        lr: learning rate (> 0).
        betas: ``(beta1, beta2)``, each in [0, 1).
        eps: added to the denominator (> 0).
        weight_decay: L2 penalty added to the gradient (>= 0).
        amsgrad: use the running maximum of the second moment.

    State: ``exp_avg``, ``exp_avg_sq`` and, with AMSGrad, ``max_exp_avg_sq``.
    """

    spec = Spec(name="adam", doc="Adam (torch.optim.Adam).",
                options=_adam_options(_weight_decay(0.0, "L2 penalty added to the gradient.")))

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False):
        self.spec.check(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.amsgrad = bool(amsgrad)
        super().__init__(params, lr)

    def _buffer_names(self):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self.amsgrad else ())

    def _update(self, param, grad, state, tmp_a, tmp_b, lr):
        self._adam_update(param, _with_l2(param, grad, self.weight_decay, tmp_a),
                          state, tmp_a, tmp_b, lr)

    def _adam_update(self, param, grad, state, tmp_a, tmp_b, lr):
        """The Adam step proper; ``grad`` may be ``tmp_a`` (consumed before reuse)."""
        beta1, beta2 = self.betas
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        _ema(exp_avg, grad, beta1, tmp_b)
        _ema(exp_avg_sq, np.multiply(grad, grad, out=tmp_b), beta2, tmp_b)
        if self.amsgrad:
            exp_avg_sq = np.maximum(state["max_exp_avg_sq"], exp_avg_sq,
                                    out=state["max_exp_avg_sq"])
        bias_correction1 = 1 - beta1 ** self.step_count
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** self.step_count)
        denom = np.sqrt(exp_avg_sq, out=tmp_a)
        denom /= bias_correction2_sqrt
        denom += self.eps
        np.divide(exp_avg, denom, out=tmp_b)
        tmp_b *= -lr / bias_correction1
        param += tmp_b


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p = p * (1 - lr * weight_decay)`` first.

    Per step: decay the parameter, then the Adam step of ``Adam`` with no L2 term.
    Arguments and state as ``Adam``; ``weight_decay`` defaults to 1e-2.
    """

    spec = Spec(name="adamw", doc="AdamW: Adam with decoupled weight decay (torch.optim.AdamW).",
                options=_adam_options(_weight_decay(
                    1e-2, "Decoupled weight decay: p = p * (1 - lr * weight_decay) first.")))

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)

    def _update(self, param, grad, state, tmp_a, tmp_b, lr):
        if self.weight_decay != 0:
            param *= 1 - lr * self.weight_decay
        self._adam_update(param, grad, state, tmp_a, tmp_b, lr)


class RMSprop(Optimizer):
    """RMSprop, optionally centered and with momentum.

    Per step, with g the gradient::

        g = g + weight_decay * p                       if weight_decay != 0
        v = alpha * v + (1 - alpha) * g**2
        g_avg = alpha * g_avg + (1 - alpha) * g;  v~ = v - g_avg**2   if centered
        denom = sqrt(v~) + eps                          (v~ = v if not centered)
        b = momentum * b + g / denom;  p = p - lr * b   if momentum > 0
        p = p - lr * g / denom                          otherwise

    Args:
        params: ``(name, param, grad)`` triples.
        lr: learning rate (> 0).
        alpha: smoothing constant, in [0, 1).
        eps: added to the denominator (> 0).
        weight_decay: L2 penalty added to the gradient (>= 0).
        momentum: momentum factor, in [0, 1).
        centered: normalise by an estimate of the gradient's variance.

    State: ``square_avg``, plus ``momentum_buffer`` if ``momentum > 0`` and
    ``grad_avg`` if centered.
    """

    spec = Spec(
        name="rmsprop", doc="RMSprop (torch.optim.RMSprop).",
        options=(
            _lr(1e-2),
            Option("alpha", float, 0.99, "Smoothing constant of the squared gradient.", ge=0, lt=1),
            _eps(),
            Option("momentum", float, 0.0, "Momentum factor.", ge=0, lt=1),
            Option("centered", bool, False, "Normalise by the estimated variance of the gradient."),
            _weight_decay(0.0, "L2 penalty added to the gradient."),
        ),
    )

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False):
        self.spec.check(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered)
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.momentum = float(momentum)
        self.centered = bool(centered)
        super().__init__(params, lr)

    def _buffer_names(self):
        return (("square_avg",) + (("momentum_buffer",) if self.momentum > 0 else ())
                + (("grad_avg",) if self.centered else ()))

    def _update(self, param, grad, state, tmp_a, tmp_b, lr):
        d_p = _with_l2(param, grad, self.weight_decay, tmp_a)
        square_avg = state["square_avg"]
        _ema(square_avg, np.multiply(d_p, d_p, out=tmp_b), self.alpha, tmp_b)
        if self.centered:
            grad_avg = _ema(state["grad_avg"], d_p, self.alpha, tmp_b)
            np.multiply(grad_avg, grad_avg, out=tmp_b)
            np.subtract(square_avg, tmp_b, out=tmp_b)
            denom = np.sqrt(tmp_b, out=tmp_b)
        else:
            denom = np.sqrt(square_avg, out=tmp_b)
        denom += self.eps
        step_dir = np.divide(d_p, denom, out=tmp_b)
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += step_dir
            np.multiply(buf, -lr, out=tmp_b)
        else:
            tmp_b *= -lr
        param += tmp_b


def grad_norm(grads):
    """Global L2 norm of gradient arrays taken together, as a Python float.

    One BLAS dot product per array: ``[model.flat_grads]`` takes one in all. Any NaN or
    infinite entry makes the norm non-finite, so a finite norm proves every entry
    finite; a non-finite one can also mean finite entries too large to square in their
    dtype.
    """
    total = 0.0
    for g in grads:
        flat = g.reshape(-1)
        total += float(flat.dot(flat))
    return math.sqrt(total)


def clip_grad_norm(grads, max_norm, norm=None):
    """Scale gradients in place so their global L2 norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: the total norm is the L2 norm of all the
    arrays taken together, and each array is multiplied by
    ``min(1, max_norm / (total_norm + 1e-6))``. A non-finite total norm is returned
    with the gradients left untouched, for the caller to treat as divergence.

    Args:
        grads: iterable of gradient arrays, scaled in place.
        max_norm: largest allowed total norm (> 0).
        norm: their ``grad_norm``, when the caller already has it.

    Returns:
        The total norm before clipping, as a Python float.
    """
    _require(max_norm > 0, "max_norm", "> 0", max_norm)
    grads = list(grads)
    total = grad_norm(grads) if norm is None else norm
    coef = max_norm / (total + 1e-6)
    if math.isfinite(total) and coef < 1:
        for g in grads:
            g *= coef
    return total


def _require(ok, name, rule, value):
    """Raise ``ValueError`` naming the hyperparameter unless ``ok``."""
    if not ok:
        raise ValueError(f"{name} must be {rule}, got {value!r}")


def _check_param(name, param, grad, seen):
    """Reject a duplicate name, a non-float parameter or a mismatched gradient."""
    if name in seen:
        raise ValueError(f"parameter name {name!r} appears twice")
    if not isinstance(param, np.ndarray) or param.dtype.kind != "f":
        raise ValueError(f"parameter {name!r} must be a floating-point ndarray")
    if not isinstance(grad, np.ndarray) or grad.shape != param.shape or grad.dtype != param.dtype:
        raise ValueError(
            f"gradient of {name!r} must be an ndarray of shape {param.shape} and dtype "
            f"{param.dtype}"
        )


def _blocks(param, grad, state):
    """``(param, grad, state, tmp_a, tmp_b)`` for each block of BLOCK elements of the
    packed arrays; the scratch arrays are shared by the blocks."""
    size = min(param.size, BLOCK)
    tmp_a, tmp_b = np.empty(size, param.dtype), np.empty(size, param.dtype)
    blocks = []
    for start in range(0, param.size, BLOCK):
        end = min(start + BLOCK, param.size)
        blocks.append((param[start:end], grad[start:end],
                       {buf: arr[start:end] for buf, arr in state.items()},
                       tmp_a[:end - start], tmp_b[:end - start]))
    return blocks


def _views(flat, like):
    """Consecutive views of ``flat`` shaped like each array of ``like``."""
    views, start = [], 0
    for a in like:
        views.append(flat[start:start + a.size].reshape(a.shape))
        start += a.size
    return views


def _scratch_views(params):
    """Two scratch arrays per parameter, as views of buffers shared across parameters.

    Returns:
        list of ``(tmp_a, tmp_b)``, each shaped and typed like the matching parameter.
    """
    sizes = {}
    for p in params:
        sizes[p.dtype] = max(sizes.get(p.dtype, 0), p.size)
    flat = {dtype: (np.empty(n, dtype), np.empty(n, dtype)) for dtype, n in sizes.items()}
    return [tuple(buf[:p.size].reshape(p.shape) for buf in flat[p.dtype]) for p in params]


def _ema(avg, x, beta, tmp):
    """``avg = beta * avg + (1 - beta) * x`` in place; ``tmp`` is scratch and may be ``x``."""
    avg *= beta
    np.multiply(x, 1 - beta, out=tmp)
    avg += tmp
    return avg


def _with_l2(param, grad, weight_decay, out):
    """``grad + weight_decay * param`` written to ``out``, or ``grad`` itself if no decay."""
    if weight_decay == 0:
        return grad
    np.multiply(param, weight_decay, out=out)
    out += grad
    return out
