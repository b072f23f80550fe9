"""The experiment file: schema, loading, overrides and error messages."""

from nnback.config.loader import apply_overrides, load_config, read_yaml, validate
from nnback.config.schema import Experiment

__all__ = ["Experiment", "apply_overrides", "load_config", "read_yaml", "validate"]
