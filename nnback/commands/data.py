"""``nnback data``: fetch the downloadable data sets."""

from __future__ import annotations

from pathlib import Path

from nnback.data import fetch


def fetch_lines(name: str, folder: str | Path) -> list[str]:
    """Fetch data set ``name`` into ``folder``; one line ``<status>  <file>`` per file."""
    return [f"{status:>10}  {path}" for path, status in fetch(name, Path(folder))]
