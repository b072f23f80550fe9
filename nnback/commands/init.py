"""``nnback init [PATH]``: write a commented starter experiment that validates as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from nnback.errors import NnbackError
from nnback.runfolder.atomic import atomic_write_text
from nnback.runfolder.preflight import check_output_file

STARTER = """\
# A starter nnback experiment: a small network on the notes' spiral, seconds to train.
# Check it with `nnback validate {path}`, train it with `nnback train {path}`.
# `nnback schema` lists every key with its type, default, bounds and meaning.
name: {name:<23} # runs go to <output.dir>/<name>/<timestamp>/
seed: 0                       # seeds the split, initial weights, shuffling and dropout

data:
  source: spiral              # a generator (spiral, moons, blobs, sine, ...), digits, or a .csv/.npz file
  classes: 3
  points_per_class: 100
  noise: 0.2
  split: {{val: 0.2, test: 0.1}}  # held-out fractions, stratified by class
  preprocess: standardize     # fitted on the training split, saved with the model

model:
  layers:                     # or compactly: mlp: {{hidden: [64], activation: relu}}
    - {{type: linear, units: 64}}    # the input size comes from the data
    - {{type: relu}}
    - {{type: linear, units: auto}}  # auto: one output per class (or regression target)

loss: softmax_cross_entropy   # classes; mse for regression; also hinge, bce_with_logits

optimizer: {{type: adam, lr: 0.01}}          # sgd (momentum, nesterov), adam, adamw, rmsprop
schedule: {{type: cosine, warmup_epochs: 1}}  # constant, step, exponential, cosine

train:
  epochs: 50
  batch_size: 32
  early_stopping: {{metric: val_loss, patience: 10}}  # keeps the best epoch's weights

output:
  dir: runs
"""

PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def starter_text(path: str | Path) -> str:
    """The starter experiment for ``path``, named after the file when its stem is a plain name."""
    stem = Path(path).stem
    return STARTER.format(path=shlex.quote(str(path)),
                          name=stem if PLAIN_NAME.fullmatch(stem) else "experiment")


def write_starter(path: str | Path, force: bool = False) -> Path:
    """Write the starter experiment to ``path`` atomically.

    Raises:
        NnbackError: ``path`` exists and ``force`` is not set, or is a folder.
        RunIOError: ``path`` cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise NnbackError(f"{path}: is a folder; give a file name such as {path / 'experiment.yaml'}")
    if path.exists() and not force:
        raise NnbackError(f"{path}: already exists; add --force to overwrite it")
    check_output_file(path)
    atomic_write_text(path, starter_text(path))
    return path
