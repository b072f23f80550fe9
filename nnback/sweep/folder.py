"""The sweep folder's definition files: ``sweep.yaml`` and ``base.yaml``.

``sweep.yaml`` is the sweep file as resolved (defaults filled in) with ``base:
base.yaml``; ``base.yaml`` is the base experiment with ``--set`` applied. Together they
are what a re-run compares against: ``nnback sweep DIR/sweep.yaml --out DIR`` continues
the sweep even where the original files are gone.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from nnback.config import read_yaml
from nnback.config.diff import differing_keys
from nnback.errors import ConfigError
from nnback.runfolder.atomic import atomic_write_text
from nnback.runfolder.sweep_folder import SWEEP_FILE
from nnback.sweep.spec import SweepSpec

BASE_FILE = "base.yaml"
# Sweep keys that change neither the trials nor their results.
_RUN_CONTROL = ("base", "output", "name")


def resolved(spec: SweepSpec) -> dict:
    return {**spec.model_dump(mode="json", exclude_none=True), "base": BASE_FILE}


def check_unchanged(folder: Path, spec: SweepSpec, base: dict, force: bool) -> None:
    """Refuse a sweep file or base experiment that differs from the folder's, unless forced.

    Raises:
        ConfigError: ``"sweeps/x: the sweep differs from the one in this folder in
            parameters.optimizer.lr, base.train.epochs; add --force to continue anyway"``.
    """
    if force or not (folder / SWEEP_FILE).is_file():
        return
    saved_spec = read_yaml(folder / SWEEP_FILE)
    saved_base = read_yaml(folder / BASE_FILE) if (folder / BASE_FILE).is_file() else {}
    spec_keys = [k for k in differing_keys([saved_spec, resolved(spec)])
                 if k.split(".")[0] not in _RUN_CONTROL]
    base_keys = [f"base.{k}" for k in differing_keys([saved_base, base])]
    if spec_keys or base_keys:
        raise ConfigError(f"{folder}: the sweep differs from the one in this folder in "
                          f"{', '.join(spec_keys + base_keys)}; add --force to continue anyway")


def write_definition(folder: Path, spec: SweepSpec, base: dict) -> None:
    atomic_write_text(folder / BASE_FILE, yaml.safe_dump(base, sort_keys=False))
    atomic_write_text(folder / SWEEP_FILE, yaml.safe_dump(resolved(spec), sort_keys=False))
