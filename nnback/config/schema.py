"""The experiment file: one pydantic model per YAML section.

Every model forbids unknown keys and documents every field; cross-field checks raise
errors whose location is the YAML key to fix. The ``data:`` section lives in
``nnback.config.data_schema``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from nnback.config.data_schema import DataConfig
from nnback.config.timeparse import parse_duration


class Section(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def _tag_from_string(value):
    """Accept the short form ``relu`` for ``{type: relu}``."""
    return {"type": value} if isinstance(value, str) else value


# --- model ---------------------------------------------------------------------------

Init = Literal["he_normal", "he_uniform", "xavier_normal", "xavier_uniform"]


class LinearSpec(Section):
    type: Literal["linear"] = Field(description="Fully connected layer, out = x @ W + b.")
    units: int | Literal["auto"] = Field(
        description="Output features; 'auto' = number of classes (or regression targets).",
    )
    init: Init = Field("he_normal", description="Weight initialisation; biases start at zero.")
    bias: bool = Field(True, description="Learn an additive bias b.")

    @model_validator(mode="after")
    def _positive_units(self):
        if self.units != "auto" and self.units < 1:
            raise ValueError(f"units: must be a positive integer or 'auto' (got {self.units})")
        return self


class ActivationSpec(Section):
    type: Literal["relu", "sigmoid", "tanh", "gelu", "softplus"] = Field(
        description="Element-wise activation without parameters."
    )


class LeakyReLUSpec(Section):
    type: Literal["leaky_relu"] = Field(description="max(x, negative_slope * x).")
    negative_slope: float = Field(0.01, ge=0, description="Slope for negative inputs.")


class DropoutSpec(Section):
    type: Literal["dropout"] = Field(description="Inverted dropout; identity in evaluation.")
    p: float = Field(0.5, ge=0, lt=1, description="Probability of zeroing a unit in training.")


class BatchNormSpec(Section):
    type: Literal["batchnorm"] = Field(description="Batch normalisation over the batch axis.")
    momentum: float = Field(0.1, gt=0, le=1, description="Weight of the new batch in the running statistics.")
    eps: float = Field(1e-5, gt=0, description="Added to the variance before the square root.")


class LayerNormSpec(Section):
    type: Literal["layernorm"] = Field(description="Normalisation over the features of each sample.")
    eps: float = Field(1e-5, gt=0, description="Added to the variance before the square root.")


LayerSpec = Annotated[
    LinearSpec | ActivationSpec | LeakyReLUSpec | DropoutSpec | BatchNormSpec | LayerNormSpec,
    Field(discriminator="type"),
]
_LAYER_ADAPTER = TypeAdapter(LayerSpec)


class MLPSpec(Section):
    hidden: list[Annotated[int, Field(gt=0)]] = Field(
        description="Width of each hidden layer, e.g. [128, 64]."
    )
    activation: Literal["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softplus"] = Field(
        "relu", description="Activation after every hidden layer."
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout after every hidden activation (0 = none).")
    norm: Literal["none", "batchnorm", "layernorm"] = Field(
        "none", description="Normalisation after every hidden linear layer."
    )
    init: Init = Field("he_normal", description="Weight initialisation of every linear layer.")

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
    layers: list[LayerSpec] | None = Field(
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


# --- loss ----------------------------------------------------------------------------


class CrossEntropySpec(Section):
    type: Literal["softmax_cross_entropy"] = Field(description="Softmax + cross-entropy on class labels.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Mass spread evenly over all classes.")


class PlainLossSpec(Section):
    type: Literal["mse", "hinge", "bce_with_logits"] = Field(
        description="mse: regression; hinge: multiclass SVM; bce_with_logits: binary targets."
    )


LossSpec = Annotated[CrossEntropySpec | PlainLossSpec, Field(discriminator="type")]


# --- optimizer -----------------------------------------------------------------------


class SGDSpec(Section):
    type: Literal["sgd"] = Field(description="Stochastic gradient descent (torch.optim.SGD).")
    lr: float = Field(0.01, gt=0, description="Learning rate (peak value when scheduled).")
    momentum: float = Field(0.0, ge=0, lt=1, description="Momentum factor.")
    dampening: float = Field(0.0, ge=0, le=1, description="Dampening of the momentum buffer.")
    nesterov: bool = Field(False, description="Nesterov momentum (needs momentum > 0, dampening 0).")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradient.")

    @model_validator(mode="after")
    def _nesterov(self):
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov: needs momentum > 0 and dampening 0")
        return self


class AdamSpec(Section):
    type: Literal["adam", "adamw"] = Field(description="Adam, or AdamW with decoupled weight decay.")
    lr: float = Field(1e-3, gt=0, description="Learning rate (peak value when scheduled).")
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = Field(
        (0.9, 0.999), description="Decay rates of the first and second moment estimates."
    )
    eps: float = Field(1e-8, gt=0, description="Added to the denominator for stability.")
    weight_decay: float | None = Field(
        None, ge=0, description="Weight decay; default 0 for adam, 0.01 for adamw (as torch)."
    )
    amsgrad: bool = Field(False, description="Use the maximum of past second moments.")


class RMSpropSpec(Section):
    type: Literal["rmsprop"] = Field(description="RMSprop (torch.optim.RMSprop).")
    lr: float = Field(1e-2, gt=0, description="Learning rate (peak value when scheduled).")
    alpha: float = Field(0.99, ge=0, lt=1, description="Smoothing constant of the squared gradient.")
    eps: float = Field(1e-8, gt=0, description="Added to the denominator for stability.")
    momentum: float = Field(0.0, ge=0, lt=1, description="Momentum factor.")
    centered: bool = Field(False, description="Normalise by the estimated variance of the gradient.")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradient.")


OptimizerSpec = Annotated[SGDSpec | AdamSpec | RMSpropSpec, Field(discriminator="type")]


# --- schedule ------------------------------------------------------------------------


class Warmup(Section):
    warmup_epochs: float = Field(0.0, ge=0, description="Linear warm-up from 0 to lr, in epochs.")


class ConstantSchedule(Warmup):
    type: Literal["constant"] = Field(description="The optimizer's lr throughout.")


class StepSchedule(Warmup):
    type: Literal["step"] = Field(description="Multiply lr by gamma every step_epochs epochs.")
    step_epochs: float = Field(10, gt=0, description="Epochs between decays.")
    gamma: float = Field(0.1, gt=0, le=1, description="Decay factor.")


class ExponentialSchedule(Warmup):
    type: Literal["exponential"] = Field(description="Multiply lr by gamma every epoch, smoothly.")
    gamma: float = Field(0.95, gt=0, le=1, description="Decay factor per epoch.")


class CosineSchedule(Warmup):
    type: Literal["cosine"] = Field(description="Cosine decay from lr to min_lr over the run.")
    min_lr: float = Field(0.0, ge=0, description="Learning rate at the last step.")


ScheduleSpec = Annotated[
    ConstantSchedule | StepSchedule | ExponentialSchedule | CosineSchedule,
    Field(discriminator="type"),
]


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


class Experiment(Section):
    """A whole experiment file."""

    name: str = Field(description="Name of the experiment; used in run folders and logs.", min_length=1)
    seed: int = Field(0, ge=0, description="Seeds data splits, initialisation, shuffling and dropout.")
    data: DataConfig = Field(description="Where the data comes from and how it is prepared.")
    model: ModelConfig = Field(description="The network.")
    loss: LossSpec = Field(description="Training objective.")
    optimizer: OptimizerSpec = Field(description="Update rule and its hyperparameters.")
    schedule: ScheduleSpec = Field(
        default_factory=lambda: ConstantSchedule(type="constant"), description="Learning-rate schedule."
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="Length and control of training.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Where results are written.")

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
        if not isinstance(last, LinearSpec):
            raise ValueError(
                f"model.layers: the last layer must be linear (scores for the loss), got '{last.type}'"
            )
        return self

    def _has_validation(self) -> bool:
        """The data gives a validation split: a fraction, or a val file."""
        return self.data.split.val > 0 or getattr(self.data, "val", None) is not None
