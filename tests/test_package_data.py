"""The built-in digits travel with the package: a wheel built from the source holds them,
and a plain (non-editable) install reads them from wherever it is installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = "nnback/data/shipped/digits.npz"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built offline from a copy of the sources (the checkout stays untouched)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "nnback", source / "nnback", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-w", str(out), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("nnback-*.whl")
    return built


def test_the_wheel_holds_the_digits(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert SHIPPED in names
        assert archive.read(SHIPPED) == (ROOT / SHIPPED).read_bytes()
    assert not [n for n in names if n.startswith("data/")]  # the example files stay in the checkout


def test_an_installed_wheel_reads_its_own_digits(wheel, tmp_path):
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                           "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    script = ("import nnback.data.builtin as d; t = d.load_digits(); "
              "print(d.DIGITS_PATH); print(t.X.shape)")
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    path, shape = run.stdout.splitlines()
    assert Path(path) == target / SHIPPED and shape == "(1797, 64)"

    (target / SHIPPED).unlink()
    run = subprocess.run([sys.executable, "-c", "import nnback.data.builtin as d; d.load_digits()"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert f"digits: {target / SHIPPED} is missing from this installation of nnback" in run.stderr
    assert (target / SHIPPED).parent.is_dir()  # the message names a real place
