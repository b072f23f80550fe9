"""Numbers as people read them: byte counts, durations and aligned text tables."""

from __future__ import annotations

import re

from nnback.errors import one_line

# Cells aligned right: numbers (1,234 and nan too), durations and the "-" of a missing value.
NUMBER = re.compile(r"^(-|[-+]?([\d.,]+(e[-+]?\d+)?|nan|inf)(s|m\d\ds|h\d\dm)?)$")


def format_bytes(n: float, si: bool = False) -> str:
    """``37.5 KiB`` (powers of 1024, one decimal), or with ``si`` ``12 MB`` (powers of
    1000, three significant digits), as disks are sold."""
    if si:
        for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3), ("B", 1)):
            if n >= scale:
                value = n / scale
                return f"{value:.3g} {unit}" if value < 1000 else f"{value:,.0f} {unit}"
        return "0 B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def duration(seconds: float) -> str:
    """``12.3s``, ``4m05s`` or ``1h02m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell; text left-aligned, numbers right-aligned;
    control characters in a cell (a name or path read from a file) escaped, so that
    every row stays one line."""
    headers = [one_line(h) for h in headers]
    rows = [[one_line(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        padded = (c.rjust(w) if NUMBER.match(c) else c.ljust(w) for c, w in zip(cells, widths, strict=True))
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *map(line, rows)])
