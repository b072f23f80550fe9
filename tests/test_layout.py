"""README's Layout section names every module and package of nnback/, and nothing else."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRY = re.compile(r"^(?P<indent> *)- `(?P<name>[\w.]+/?)`")


def layout_paths() -> set[str]:
    """Paths of the nested list in README's ``## Layout``, e.g. ``nnback/train/run.py``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    stack: list[tuple[int, str]] = []
    paths = set()
    for line in section.splitlines():
        match = ENTRY.match(line)
        if not match:
            continue
        indent, name = len(match["indent"]), match["name"]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = "".join(parent for _, parent in stack) + name
        paths.add(path)
        if name.endswith("/"):
            stack.append((indent, name))
    return paths


def package_paths() -> set[str]:
    """``nnback/`` itself, its packages as ``name/`` and its modules as ``name.py``."""
    package = ROOT / "nnback"
    paths = {"nnback/"}
    for init in package.rglob("__init__.py"):
        if init.parent != package:
            paths.add(init.parent.relative_to(ROOT).as_posix() + "/")
    paths.update(p.relative_to(ROOT).as_posix() for p in package.rglob("*.py") if p.name != "__init__.py")
    return paths


def test_layout_section_matches_the_package_tree():
    listed = {p for p in layout_paths() if p.startswith("nnback/")}
    present = package_paths()
    assert not present - listed, f"not in README's Layout: {sorted(present - listed)}"
    assert not listed - present, f"in README's Layout but not in nnback/: {sorted(listed - present)}"
