"""What the rest of nnback needs to know about an engine class, as plain data.

Every layer, loss and optimizer class, and every schedule function, carries a
``spec``: its YAML name, its options with their defaults and bounds, the formulas
``nnback explain`` prints and the flags the training diagnostics read. The config
schema, the builder, explain and the diagnostics derive everything from it, and the
constructor checks its arguments against the same options (``spec.check``), so the
YAML and the Python API accept exactly the same values.

Adding a layer is one class in one file plus its tests::

    class Swish(Layer):
        \"\"\"``x * sigmoid(beta * x)``.\"\"\"

        spec = LayerSpec(
            name="swish", doc="x * sigmoid(beta * x).", role="activation",
            options=(Option("beta", float, 1.0, "Sharpness.", gt=0),),
            formulas=Formulas(forward=["out = x * sigmoid({layer.beta} * x)"],
                              passes=["dx = dout * (s + {layer.beta} * x * s * (1 - s))"],
                              caches=[("x", "(N, {i})"), ("s", "(N, {i})")]),
        )

        def __init__(self, beta=1.0):
            super().__init__()
            self.spec.check(beta=beta)
            self.beta = beta

and its import in ``nnback/layers/__init__.py``: ``nnback.registry`` lists every class
that declares a ``spec`` of its own (a subclass without one is not a new name).
Schedules are functions; ``@with_spec(Spec(...))`` puts the spec on one.

This module imports nothing outside the standard library: the engine stays NumPy only.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Sequence
from numbers import Integral, Real

REQUIRED = ...  # the default of an option that has none (as pydantic marks one)

BOUNDS = {"gt": "greater than", "ge": "at least", "lt": "less than", "le": "at most"}
_HOLDS = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}


def number(value) -> str:
    """A limit as a person writes it: ``0`` rather than ``0.0``."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting of an engine class: a YAML key and a constructor keyword.

    Attributes:
        name: the YAML key, and the constructor keyword unless ``arg`` is given.
        type: ``float``, ``int``, ``bool`` or ``str``.
        default: the value when the key is left out; ``REQUIRED`` if it must be given.
        doc: one line on its meaning and units (the schema's field description).
        gt, ge, lt, le: bounds of a number (greater than, at least, less than, at most).
        choices: the allowed values of a ``str`` option.
        size: more than 1 for a fixed-length list of numbers, each within the bounds.
        pair: a number, or a list of two (height, width), each within the bounds: an
            image window's size, step or padding.
        arg: the constructor keyword, when it differs from ``name``.
        auto: a positive integer, or ``auto`` in the YAML (only on the last layer): the
            builder puts in the output size the data and the loss need.
        unit: how the builder turns the YAML value into the argument: None (as is),
            ``"epochs"`` (a count of epochs -> steps, at least 1) or ``"per epoch"``
            (a factor per epoch -> the factor per step).
    """

    name: str
    type: type
    default: object
    doc: str
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple = ()
    size: int = 1
    pair: bool = False
    arg: str | None = None
    auto: bool = False
    unit: str | None = None

    @property
    def keyword(self) -> str:
        """The constructor keyword this option is passed as."""
        return self.arg or self.name

    @property
    def bounds(self) -> dict[str, float]:
        """The bounds that are set, e.g. ``{"ge": 0, "lt": 1}``."""
        return {key: getattr(self, key) for key in BOUNDS if getattr(self, key) is not None}

    def problem(self, value) -> str | None:
        """What is wrong with ``value`` ("must be at least 0"), or None if it is allowed.

        For a list, the index of the first bad element comes first: "[1] must be less than 1".
        """
        if self.pair and isinstance(value, (tuple, list)):
            if len(value) != 2:
                return "must be a number or a list of 2 numbers"
            return next((f"[{i}] {p}" for i, v in enumerate(value)
                         if (p := self._scalar_problem(v)) is not None), None)
        if self.size > 1:
            if not isinstance(value, (tuple, list)) or len(value) != self.size:
                return f"must be a list of {self.size} numbers"
            return next((f"[{i}] {p}" for i, v in enumerate(value)
                         if (p := self._scalar_problem(v)) is not None), None)
        return self._scalar_problem(value)

    def _scalar_problem(self, value) -> str | None:
        if self.choices:
            return None if value in self.choices else f"must be one of {', '.join(self.choices)}"
        if self.type is int and not isinstance(value, Integral):
            return "must be an integer"
        if self.type in (int, float) and not isinstance(value, Real):
            return "must be a number"
        for key, bound in self.bounds.items():
            if not _HOLDS[key](value, bound):
                return f"must be {BOUNDS[key]} {number(bound)}"
        return None


@dataclasses.dataclass(frozen=True)
class Formulas:
    """What ``nnback explain`` prints for a layer or a loss.

    Templates are ``str.format`` strings; they may use ``{i}`` and ``{o}`` (a layer's
    input and output shape per sample: ``64`` or ``1, 8, 8``), ``{layer}`` or ``{loss}``
    (the object, for its settings: ``{layer.eps}``), ``{bias}`` (`` + b`` when a layer
    has a bias), ``{c}`` (a loss's scores per sample) and the names a layer's
    ``formula_sizes(in_shape)`` returns, if it has that method. A line that comes out
    empty is left out.

    Attributes:
        forward: lines of the forward computation.
        passes: lines of the gradient passed back (for a loss: the one that starts
            the backward pass).
        keeps: ``(param, formula)`` for each parameter gradient the layer keeps; a
            parameter the layer lacks (a disabled bias) is left out.
        caches: ``(what, shape)`` for each array kept between forward and backward.
    """

    forward: Sequence[str]
    passes: Sequence[str]
    keeps: Sequence[tuple[str, str]] = ()
    caches: Sequence[tuple[str, str]] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Spec:
    """The name, options and rules of an optimizer or a schedule (and the base of the others).

    Attributes:
        name: the YAML ``type``.
        doc: one line for the schema's description of that ``type``.
        options: its settings, in the order the resolved config lists them.
        rules: checks across options, each ``rule(values) -> message or None`` on
            ``{option name: value}``; the message starts with the key to fix
            (``"nesterov: needs momentum > 0 and dampening 0"``).
    """

    name: str
    doc: str
    options: tuple[Option, ...] = ()
    rules: tuple[Callable[[dict], str | None], ...] = ()

    def option(self, name: str) -> Option:
        """The option called ``name`` (its YAML key)."""
        return next(o for o in self.options if o.name == name)

    def check(self, **values) -> None:
        """Raise ValueError naming the first argument that is not allowed.

        ``values`` are constructor keywords (``out_features`` for Linear's ``units``);
        keywords that are not options are not checked.
        """
        by_name = {}
        for option in self.options:
            if option.keyword not in values:
                continue
            value = by_name[option.name] = values[option.keyword]
            problem = option.problem(value)
            if problem is not None:
                key = option.keyword
                if problem.startswith("["):  # "[1] must be ...": an element of a list
                    index, problem = problem.split(" ", 1)
                    key += index
                raise ValueError(f"{key} {problem}, got {value!r}")
        for rule in self.rules:
            message = rule(by_name)
            if message is not None:
                raise ValueError(message)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerSpec(Spec):
    """A layer's spec: what the schema, explain and the diagnostics need.

    Attributes:
        role: ``"linear"``, ``"activation"`` (offered by ``model.mlp.activation``; the
            diagnostics record the mean and spread of its output), ``"norm"`` (offered
            by ``model.mlp.norm``) or ``"other"``.
        formulas: for ``nnback explain``; None prints the first docstring line.
        can_die: a unit that outputs 0 for every sample passes no gradient (ReLU): the
            diagnostics report the share of such units.
        saturated_outside: ``(low, high)``: outputs outside this range have a local
            gradient near 0; the diagnostics report their share. None: never saturates.
        images: the layer works on images (N, C, H, W): a network with such a layer
            takes rows of data with an image shape as images, any other one flat rows.
        batch_statistics: in training the layer normalises each entry of axis 1 (a
            feature or a channel) over the batch and every other axis, so it needs
            more than one value there: a batch of one flat row has none.
        sized_by: the option that sets how many features or channels the layer
            outputs (``units``, ``channels``): the key to name when a network is too
            large. None when the input sets the size.
    """

    role: str = "other"
    images: bool = False
    batch_statistics: bool = False
    sized_by: str | None = None
    formulas: Formulas | None = None
    can_die: bool = False
    saturated_outside: tuple[float, float] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class LossSpec(Spec):
    """A loss's spec.

    Attributes:
        task: ``"classification"`` (integer labels, one score per class),
            ``"regression"`` (float targets, one score per target) or ``"binary"``
            (two classes, one logit, 0/1 float targets).
        probabilities: the scores are logits of probabilities (``predict_proba``).
        formulas: for ``nnback explain``.
    """

    task: str
    probabilities: bool = False
    formulas: Formulas | None = None

    @property
    def data_task(self) -> str:
        """The task the data must have: binary losses train on classification data."""
        return "regression" if self.task == "regression" else "classification"


def with_spec(spec: Spec):
    """Decorator putting ``spec`` on a function, as ``fn.spec`` (schedules are functions)."""

    def attach(fn):
        fn.spec = spec
        return fn

    return attach
