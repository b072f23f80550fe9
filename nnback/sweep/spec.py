"""The sweep file: its schema, and the check of every parameter against the experiment.

A sweep file names a base experiment, the metric that scores a trial and the dotted
keys (exactly those ``--set`` takes) to vary::

    parameters:
      optimizer.lr: [0.01, 0.03, 0.1]              # a list: a set of choices
      optimizer.weight_decay: {log_uniform: [1.0e-6, 1.0e-2]}
      model.layers.0.units: {int_uniform: [16, 256]}

``load_sweep`` validates the file, applies ``--set`` to the base experiment and tries
every choice and both ends (and the middle) of every range on the experiment schema,
so a value the experiment would reject fails before any folder exists.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from nnback.config import apply_overrides, read_yaml, validate
from nnback.config.timeparse import parse_duration
from nnback.errors import ConfigError

# Metrics a trial records in metrics.jsonl; accuracies are maximised, losses minimised.
METRICS = ("val_loss", "val_accuracy", "train_loss")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Range(_Strict):
    """A continuous or integer range: exactly one of the three keys, ``[low, high]``."""

    uniform: tuple[float, float] | None = Field(None, description="Floats drawn evenly from [low, high].")
    log_uniform: tuple[float, float] | None = Field(
        None, description="Floats whose logarithm is drawn evenly: for learning rates, decays.")
    int_uniform: tuple[int, int] | None = Field(None, description="Integers in [low, high], both included.")

    @model_validator(mode="after")
    def _one_kind(self) -> Range:
        given = [k for k in ("uniform", "log_uniform", "int_uniform") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a range is one of {uniform: [low, high]}, {log_uniform: [low, high]}, "
                             "{int_uniform: [low, high]}")
        low, high = self.bounds
        if not low < high:
            raise ValueError(f"{self.kind}: low must be less than high (got [{low}, {high}])")
        if self.kind == "log_uniform" and low <= 0:
            raise ValueError(f"log_uniform: low must be greater than 0 (got {low})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("uniform", "log_uniform", "int_uniform") if getattr(self, k) is not None)

    @property
    def bounds(self) -> tuple:
        return getattr(self, self.kind)

    def probes(self) -> list:
        """Values tried on the experiment schema: both ends and a point in between."""
        low, high = self.bounds
        if self.kind == "int_uniform":
            return [low, (low + high) // 2, high]
        middle = math.sqrt(low * high) if self.kind == "log_uniform" else (low + high) / 2
        return [low, middle, high]


class Prune(_Strict):
    """Median pruning: stop a trial whose metric is worse than the median of finished
    trials at the same epoch (Optuna's MedianPruner)."""

    after_epochs: int = Field(ge=0, description="Epochs every trial runs before it can be pruned.")
    min_trials: int = Field(5, ge=1, description="Finished trials needed before anything is pruned.")


class Output(_Strict):
    dir: str = Field("sweeps", description="Sweeps go to <dir>/<name>/ unless --out is given.")


class SweepSpec(_Strict):
    """A whole sweep file."""

    name: str = Field(min_length=1, description="Name of the sweep; its folder is <output.dir>/<name>.")
    base: str = Field(description="The experiment file to vary, relative to the sweep file.")
    metric: Literal["val_loss", "val_accuracy", "train_loss"] = Field(
        description="Scores a trial by its best value over its evaluations; losses are "
                    "minimised, accuracies maximised.")
    method: Literal["grid", "random", "tpe"] = Field(
        "grid", description="grid: every combination; random: seeded draws; tpe: Optuna's TPE.")
    seed: int = Field(0, ge=0, description="Sampling seed; trial ids and seeds derive from it.")
    repeats: int = Field(1, ge=1, description="Training seeds per combination (mean and spread reported).")
    trials: int | None = Field(None, ge=1, description="random/tpe: how many combinations to try.")
    parameters: dict[str, Any] = Field(
        min_length=1, description="Dotted experiment keys to vary: a list of choices or a range.")
    prune: Prune | None = Field(None, description="Optional median pruning (needs Optuna).")
    trial_max_time: str | None = Field(None, description="Optional budget per trial: 90s, 10m, 1h.")
    output: Output = Field(default_factory=Output, description="Where the sweep folder goes.")

    @field_validator("parameters")
    @classmethod
    def _choices_or_ranges(cls, parameters: dict) -> dict:
        out = {}
        for key, values in parameters.items():
            if isinstance(values, list):
                if not values:
                    raise ValueError(f"parameters.{key}: the list of choices is empty")
                out[key] = values
            elif isinstance(values, dict):
                try:
                    out[key] = Range.model_validate(values)
                except ValidationError as exc:
                    error = exc.errors()[0]
                    if error["type"] == "extra_forbidden":
                        message = (f"unknown range {error['loc'][0]!r}; use uniform, log_uniform "
                                   f"or int_uniform")
                    else:
                        where = ".".join(str(p) for p in error["loc"])
                        message = str(error.get("ctx", {}).get("error", error["msg"]))
                        message = f"{where}: {message}" if where else message
                    raise ValueError(f"parameters.{key}: {message}") from None
            else:
                raise ValueError(f"parameters.{key}: expected a list of choices or a range such as "
                                 f"{{log_uniform: [1.0e-4, 0.1]}} (got {values!r})")
        return out

    @field_validator("trial_max_time", mode="before")
    @classmethod
    def _duration(cls, value):
        if value is not None:
            parse_duration(value)
            return str(value)
        return value

    @model_validator(mode="after")
    def _fits_method(self) -> SweepSpec:
        if self.method == "grid":
            ranges = [k for k, v in self.parameters.items() if isinstance(v, Range)]
            if ranges:
                raise ValueError(f"parameters.{ranges[0]}: a grid needs a list of values, not a range "
                                 f"(use method: random or tpe for ranges)")
            if self.trials is not None:
                raise ValueError("trials: a grid runs every combination; remove trials or use method: random")
        elif self.trials is None:
            raise ValueError(f"trials: method {self.method} needs the number of trials, e.g. trials: 16")
        if self.method == "tpe" and self.repeats > 1:
            raise ValueError("repeats: method tpe runs one training seed per trial; use repeats: 1")
        return self

    @property
    def maximise(self) -> bool:
        return self.metric.endswith("accuracy")

    def needs_optuna(self) -> bool:
        return self.method == "tpe" or self.prune is not None


def value_text(value) -> str:
    """``value`` as the text of a ``--set key=TEXT`` that parses back to it."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    return text.removesuffix("\n...").strip()


def set_args(params: dict) -> list[str]:
    """``--set`` arguments giving the experiment these parameter values."""
    return [f"{key}={value_text(value)}" for key, value in params.items()]


def load_sweep(path: str | Path, overrides=()) -> tuple[SweepSpec, dict]:
    """Read and check a sweep file.

    Returns:
        the spec and the resolved base experiment (``--set`` applied, validated, with
        ``data.seed`` fixed to the experiment's seed so every trial splits the data alike).

    Raises:
        ConfigError: one line naming the sweep key (or the parameter and value) at fault.
    """
    path = Path(path)
    raw = read_yaml(path)
    if "base" not in raw and {"model", "data"} & raw.keys():
        raise ConfigError(f"{path}: an experiment, not a sweep file (a sweep names its experiment in "
                          f"base: and what to vary in parameters:); train it with: nnback train {path}")
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_errors_sweep(exc, path)) from None
    base_path = path.parent / spec.base
    if not base_path.is_file():
        raise ConfigError(f"{path}: base: {spec.base}: file not found (looked for {base_path})")
    base = validate(apply_overrides(read_yaml(base_path), overrides), str(base_path)).model_dump(mode="json")
    if base["data"].get("seed") is None:
        base["data"]["seed"] = base["seed"]
    for key, values in spec.parameters.items():
        for value in values.probes() if isinstance(values, Range) else values:
            where = f"{path}: parameters.{key}: value {value_text(value)} is rejected"
            check_params(base, {key: value}, where)
    return spec, base


def check_params(base: dict, params: dict, where: str) -> dict:
    """The experiment ``base`` with ``params`` set, validated; raises a one-line
    ``ConfigError`` starting with ``where`` if the experiment rejects it."""
    try:
        raw = apply_overrides(base, set_args(params))
        return validate(raw, "").model_dump(mode="json")
    except ConfigError as exc:
        message = exc.messages[0].removeprefix(": ")
        if message.startswith("--set "):
            message = message.split(": ", 1)[-1]
        raise ConfigError(f"{where}: {message}") from None


def format_errors_sweep(exc: ValidationError, path: Path) -> list[str]:
    """One line per problem of the sweep file itself, ``file: key: message``."""
    lines = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        if error["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}; valid keys: {', '.join(_valid_keys(loc[:-1]))}"
        elif error["type"] == "missing":
            message = "required key is missing"
        else:
            message = str(error.get("ctx", {}).get("error", error["msg"]))
            if error["type"] == "value_error" and ":" in message.split(" ")[0]:
                loc = []  # the message starts with the key it is about
        where = ".".join(loc)
        lines.append(f"{path}: {where}: {message}" if where else f"{path}: {message}")
    return lines[:1] if lines else [f"{path}: invalid sweep file"]


def _valid_keys(loc: list[str]) -> list[str]:
    models = {"": SweepSpec, "prune": Prune, "output": Output}
    return sorted(models.get(".".join(loc), SweepSpec).model_fields)

