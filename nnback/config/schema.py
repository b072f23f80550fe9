"""The experiment file: one pydantic model per YAML section.

Every model forbids unknown keys and documents every field; cross-field checks raise
errors whose location is the YAML key to fix. The ``data:`` section lives in
``nnback.config.data_schema``. The sections of layers, losses, optimizers and
schedules are built from the specs of the engine classes (``nnback.spec``): their
``type`` names, options, defaults, bounds and descriptions are written there, once.
"""

from __future__ import annotations

import functools
import operator
import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from nnback.config.data_schema import DataConfig
from nnback.config.timeparse import parse_duration
from nnback.registry import INITIALIZERS, LAYERS, LOSSES, OPTIMIZERS, SCHEDULES
from nnback.spec import Option, Spec


class Section(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def _tag_from_string(value):
    """Accept the short form ``relu`` for ``{type: relu}``."""
    return {"type": value} if isinstance(value, str) else value


# --- sections derived from the engine's specs (nnback.spec) ---------------------------


def _annotation(option: Option):
    """The type of an option's field, bounds included."""
    if option.choices:
        return Literal[option.choices]
    if option.auto:
        return int | Literal["auto"]  # bounds checked by _check_auto, for one message
    value = Annotated[option.type, Field(**option.bounds)] if option.bounds else option.type
    if option.pair:
        return value | tuple[value, value]
    return tuple[(value,) * option.size] if option.size > 1 else value


def _drop_nulls(cls, value):
    """``key: null`` means the default, as leaving the key out (configs saved before
    adam and adamw had their own defaults hold ``weight_decay: null``)."""
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if not (v is None and k in cls.model_fields)}
    return value


def _check_auto(name: str, option: Option):
    def check(cls, value):
        if value != "auto" and option.problem(value) is not None:
            raise ValueError(f"must be a positive integer or 'auto' (got {value})")
        return value

    return field_validator(name)(classmethod(check))


def _check_rules(spec: Spec):
    def check(self):
        for rule in spec.rules:
            message = rule(dict(self))
            if message is not None:
                raise ValueError(message)
        return self

    return model_validator(mode="after")(check)


def section_of(spec: Spec, base: type[BaseModel] = None) -> type[BaseModel]:
    """The config section of one engine class: ``type`` plus its options, checked alike."""
    fields = {"type": (Literal[spec.name], Field(description=spec.doc))}
    validators = {"_drop_nulls": model_validator(mode="before")(classmethod(_drop_nulls))}
    for option in spec.options:
        fields[option.name] = (_annotation(option), Field(option.default, description=option.doc))
        if option.auto:
            validators[f"_check_{option.name}"] = _check_auto(option.name, option)
    if spec.rules:
        validators["_check_rules"] = _check_rules(spec)
    title = "".join(part.title() for part in spec.name.split("_"))
    return create_model(f"{title}Config", __base__=base or Section, __validators__=validators,
                        **fields)


def _union(sections: dict[str, type[BaseModel]]):
    """The sections as one field, told apart by ``type``."""
    return Annotated[functools.reduce(operator.or_, sections.values()), Field(discriminator="type")]


class Warmup(Section):
    warmup_epochs: float = Field(0.0, ge=0, description="Linear warm-up from 0 to lr, in epochs.")


LAYER_SECTIONS = {name: section_of(cls.spec) for name, cls in LAYERS.items()}
LOSS_SECTIONS = {name: section_of(cls.spec) for name, cls in LOSSES.items()}
OPTIMIZER_SECTIONS = {name: section_of(cls.spec) for name, cls in OPTIMIZERS.items()}
SCHEDULE_SECTIONS = {name: section_of(fn.spec, Warmup) for name, fn in SCHEDULES.items()}

LayerConfig = _union(LAYER_SECTIONS)
LossConfig = _union(LOSS_SECTIONS)
OptimizerConfig = _union(OPTIMIZER_SECTIONS)
ScheduleConfig = _union(SCHEDULE_SECTIONS)
_LAYER_ADAPTER = TypeAdapter(LayerConfig)


# --- model ---------------------------------------------------------------------------

ACTIVATIONS = tuple(name for name, cls in LAYERS.items() if cls.spec.role == "activation")
NORMS = tuple(name for name, cls in LAYERS.items() if cls.spec.role == "norm")
INITS = tuple(INITIALIZERS)
_UNITS = LAYERS["linear"].spec.option("units").bounds
_DROPOUT = LAYERS["dropout"].spec.option("p").bounds


class MLPSpec(Section):
    hidden: list[Annotated[int, Field(**_UNITS)]] = Field(
        description="Width of each hidden layer, e.g. [128, 64]."
    )
    activation: Literal[ACTIVATIONS] = Field("relu", description="Activation after every hidden layer.")
    dropout: float = Field(0.0, **_DROPOUT, description="Dropout after every hidden activation (0 = none).")
    norm: Literal[("none",) + NORMS] = Field(
        "none", description="Normalisation after every hidden linear layer."
    )
    init: Literal[INITS] = Field("he_normal", description="Weight initialisation of every linear layer.")

    def expand(self) -> list:
        """The explicit layer specs this compact form stands for."""
        layers: list[dict] = []
        for units in self.hidden:
            # a bias before batchnorm is cancelled by its mean subtraction: leave it out
            layers.append({"type": "linear", "units": units, "init": self.init,
                           "bias": self.norm != "batchnorm"})
            if self.norm != "none":
                layers.append({"type": self.norm})
            layers.append({"type": self.activation})
            if self.dropout > 0:
                layers.append({"type": "dropout", "p": self.dropout})
        layers.append({"type": "linear", "units": "auto", "init": self.init})
        return [_LAYER_ADAPTER.validate_python(spec) for spec in layers]


class ModelConfig(Section):
    layers: list[LayerConfig] | None = Field(
        None, description="The network, first layer first; the input size comes from the data."
    )
    mlp: MLPSpec | None = Field(None, description="Compact form: hidden widths and one activation.")
    dtype: Literal["float32", "float64"] = Field("float32", description="Precision of weights and data.")

    @model_validator(mode="before")
    @classmethod
    def _short_layers(cls, value):
        if isinstance(value, dict) and isinstance(value.get("layers"), list):
            value = {**value, "layers": [_tag_from_string(v) for v in value["layers"]]}
        return value

    @model_validator(mode="after")
    def _one_form(self):
        if (self.layers is None) == (self.mlp is None):
            raise ValueError("give exactly one of 'layers' or 'mlp'")
        if self.layers is not None and not self.layers:
            raise ValueError("layers: needs at least one layer")
        linear = [i for i, spec in enumerate(self.layer_specs()) if spec.type == "linear"]
        for i in linear[:-1]:
            if self.layer_specs()[i].units == "auto":
                raise ValueError(f"layers[{i}].units: 'auto' is only for the last linear layer")
        return self

    def layer_specs(self) -> list:
        """The layers in order, with the compact ``mlp`` form expanded."""
        return self.layers if self.layers is not None else self.mlp.expand()


# --- training and output -------------------------------------------------------------


class EarlyStopping(Section):
    metric: Literal["val_loss", "val_accuracy"] = Field("val_loss", description="Watched metric.")
    patience: int = Field(5, ge=1, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as improvement.")


class CheckpointSpec(Section):
    every_epochs: int | None = Field(1, ge=1, description="Write a checkpoint every N epochs.")
    every_steps: int | None = Field(None, ge=1, description="Write a checkpoint every N steps.")
    every_seconds: float | None = Field(
        300, gt=0, description="Write a checkpoint when this much wall time passed since the last."
    )
    keep: int = Field(3, ge=1, description="How many recent checkpoints to keep for fallback.")


class DivergenceSpec(Section):
    skip_batches: int = Field(
        0, ge=0, description="Non-finite batches to skip before stopping (0 = stop at the first)."
    )


class DiagnosticsSpec(Section):
    every: int = Field(100, ge=1, description="Record gradient-flow diagnostics every N steps.")


class TrainConfig(Section):
    epochs: int = Field(10, ge=1, description="Passes over the training split.")
    batch_size: int = Field(64, ge=1, description="Samples per mini-batch.")
    eval_every: int | None = Field(
        None, ge=1, description="Evaluate every N steps (default: once per epoch)."
    )
    early_stopping: EarlyStopping | None = Field(
        None, description="Stop when the metric stops improving; best weights are restored."
    )
    grad_clip: float | None = Field(None, gt=0, description="Clip the global gradient norm to this.")
    max_time: str | None = Field(
        None, description="Wall-time budget, e.g. '30m' or '2h': stop cleanly with a checkpoint."
    )
    threads: int | None = Field(
        None, ge=1, description="BLAS threads for the matrix products; null: one for small products, "
                                "else the idle cores (see README, Performance)."
    )
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec, description="When to checkpoint.")
    divergence: DivergenceSpec = Field(default_factory=DivergenceSpec, description="Non-finite loss policy.")
    diagnostics: DiagnosticsSpec | None = Field(
        default_factory=DiagnosticsSpec,
        description="Gradient-flow recording to diagnostics.jsonl (on by default; null turns it off).",
    )

    @field_validator("max_time", mode="before")
    @classmethod
    def _duration(cls, value):
        """A number of seconds or a text like '1h30m'; kept as text."""
        if value is None:
            return None
        parse_duration(value)
        return str(value)


class OutputConfig(Section):
    dir: str = Field("runs", description="Runs go to <dir>/<name>/<timestamp> unless --out is given.")


# A new run's folder is named after the experiment: no path separators, no "..", no
# control or shell-special characters, nothing hidden.
PLAIN_NAME = re.compile(r"\w[\w.+=,@-]*")
MAX_NAME_CHARS = 100


class Experiment(Section):
    """A whole experiment file."""

    name: str = Field(description="Name of the experiment; used in run folders and logs.", min_length=1)
    seed: int = Field(0, ge=0, description="Seeds data splits, initialisation, shuffling and dropout.")
    data: DataConfig = Field(description="Where the data comes from and how it is prepared.")
    model: ModelConfig = Field(description="The network.")
    loss: LossConfig = Field(description="Training objective.")
    optimizer: OptimizerConfig = Field(description="Update rule and its hyperparameters.")
    schedule: ScheduleConfig = Field(
        default_factory=lambda: SCHEDULE_SECTIONS["constant"](type="constant"),
        description="Learning-rate schedule.",
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="Length and control of training.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Where results are written.")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str, info: ValidationInfo) -> str:
        """One plain folder name, so a new run stays inside output.dir.

        Validated with the context ``{"names_folder": False}`` (a saved run, or a run
        whose folder is given by --out) the name is only a label and any name an
        earlier version accepted is kept.
        """
        if not (info.context or {}).get("names_folder", True):
            return value
        if len(value) > MAX_NAME_CHARS or not PLAIN_NAME.fullmatch(value):
            shown = repr(value[:40]) + ("..." if len(value) > 40 else "")
            raise ValueError(f"must be one plain folder name: letters, digits and - _ . + = , @, "
                             f"starting with a letter or digit, at most {MAX_NAME_CHARS} characters "
                             f"(got {shown}); the run folder is named after it")
        return value

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, value):
        if isinstance(value, dict):
            value = dict(value)
            for key in ("loss", "optimizer", "schedule"):
                if key in value:
                    value[key] = _tag_from_string(value[key])
        return value

    @model_validator(mode="after")
    def _cross_checks(self):
        if self.schedule.warmup_epochs >= self.train.epochs:
            raise ValueError(
                f"schedule.warmup_epochs: must be less than train.epochs ({self.train.epochs}) "
                f"(got {self.schedule.warmup_epochs:g})"
            )
        if self.train.early_stopping is not None and not self._has_validation():
            raise ValueError(
                "train.early_stopping: needs a validation split: set data.split.val (e.g. 0.15)"
                + (" or a data.val file" if hasattr(self.data, "val") else "")
            )
        last = self.model.layer_specs()[-1]
        if last.type != "linear":
            raise ValueError(
                f"model.layers: the last layer must be linear (scores for the loss), got '{last.type}'"
            )
        return self

    def _has_validation(self) -> bool:
        """The data gives a validation split: a fraction, or a val file."""
        return self.data.split.val > 0 or getattr(self.data, "val", None) is not None
