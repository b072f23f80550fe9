"""A sweep's folder as the commands that read run folders see it: not a run folder
itself, but its trials (``trials/<id>/``, and the link ``best``) are."""

from __future__ import annotations

from pathlib import Path

SWEEP_FILE = "sweep.yaml"
TRIALS_DIR = "trials"


def is_sweep_folder(path: str | Path) -> bool:
    """Whether ``path`` is the folder of an ``nnback sweep``."""
    return (Path(path) / SWEEP_FILE).is_file() and (Path(path) / TRIALS_DIR).is_dir()


def trial_folders(path: str | Path) -> list[Path]:
    """The run folders of a sweep's trials, in trial order."""
    return sorted(p for p in (Path(path) / TRIALS_DIR).iterdir() if (p / "config.yaml").is_file())


def pick_a_trial(path: str | Path) -> str:
    """The one-line error for a sweep folder given where one run is needed."""
    path = Path(path)
    return (f"{path}: is a sweep folder, not a run folder: give one of its trials, "
            f"{path / 'best'} (the best one) or {path / TRIALS_DIR}/<id>")
