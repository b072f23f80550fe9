"""README.md runs as shown. To skip a block, put <!-- not tested: REASON --> on the line above its fence.

The ```python and ```bash blocks run in a temporary folder holding a copy of ``config/`` (with at most a few
epochs per experiment, so the suite stays fast) and ``data/``, one after another, so a
block may use what an earlier one wrote (a run folder). Shell blocks run in bash with
``set -euo pipefail`` and ``nnback`` on the PATH (this checkout's package); Python
blocks run in-process, each in a fresh namespace. Other blocks (yaml, plain text) are
not run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).parent.parent
FENCE = re.compile(r"^```(\w*)\s*$")
NOT_TESTED = re.compile(r"^<!--\s*not tested:\s*(\S.*?)\s*-->$")
RUN = ("python", "bash", "sh")
MAX_EPOCHS = 3


def readme_blocks(text: str) -> list[dict]:
    """Fenced blocks: ``{"lang", "code", "line" (of the opening fence), "skip" (reason or None)}``."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip = NOT_TESTED.match(above.strip())
        blocks.append({"lang": match.group(1), "code": "\n".join(lines[i + 1:end]), "line": i + 1,
                       "skip": skip.group(1) if skip else None})
        i = end + 1
    return blocks


BLOCKS = [b for b in readme_blocks((REPO / "README.md").read_text(encoding="utf-8")) if b["lang"] in RUN]


def test_the_readme_has_blocks_to_run_and_marks_say_why():
    ran = [b["lang"] for b in BLOCKS if b["skip"] is None]
    assert ran.count("python") >= 2 and ran.count("bash") >= 2
    marks = re.findall(r"<!--\s*not tested\b.*?-->", (REPO / "README.md").read_text(encoding="utf-8"))
    assert all(NOT_TESTED.match(m) for m in marks), marks  # every mark gives a reason


def shortened(config_dir: Path) -> None:
    """Cut every experiment in ``config_dir`` to a few epochs (more than its warm-up)."""
    for path in config_dir.glob("*.yaml"):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        train = config.setdefault("train", {})
        schedule = config.get("schedule")
        warmup = schedule.get("warmup_epochs", 0) if isinstance(schedule, dict) else 0
        train["epochs"] = min(train.get("epochs", 10), max(MAX_EPOCHS, int(warmup) + 2))
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with config/ (shortened) and data/, and ``nnback`` on the PATH."""
    folder = tmp_path_factory.mktemp("readme")
    shutil.copytree(REPO / "config", folder / "config")
    shutil.copytree(REPO / "data", folder / "data")
    shortened(folder / "config")
    bin_dir = folder / ".bin"
    bin_dir.mkdir()
    shim = bin_dir / "nnback"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m nnback.cli "$@"\n')
    shim.chmod(0o755)
    return folder


def shell_env(workdir: Path) -> dict:
    return {**os.environ, "PATH": f"{workdir / '.bin'}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{b['line']}-{b['lang']}" for b in BLOCKS])
def test_readme_block_runs_as_shown(block, workdir, monkeypatch, capsys):
    if block["skip"]:
        pytest.skip(f"README.md line {block['line']}: not tested: {block['skip']}")
    if block["lang"] == "python":
        monkeypatch.chdir(workdir)
        exec(compile(block["code"], f"README.md (block at line {block['line']})", "exec"), {})
        return
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block["code"]], cwd=workdir,
                          env=shell_env(workdir), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"README.md line {block['line']}:\n{done.stdout}\n{done.stderr}"
