"""Durations as people write them: ``"90s"``, ``"30m"``, ``"2h"``, ``"1h30m"``, ``"45"``."""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
# Parts in the order d, h, m, s, each at most once; at least one part.
_DURATION = re.compile(
    rf"(?:(?P<d>{_NUMBER})\s*d)?\s*(?:(?P<h>{_NUMBER})\s*h)?\s*"
    rf"(?:(?P<m>{_NUMBER})\s*m)?\s*(?:(?P<s>{_NUMBER})\s*s)?",
    re.IGNORECASE,
)


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value``: a number of seconds, or parts like ``"1d2h30m15s"``.

    Raises:
        ValueError: ``"invalid duration '3x': use e.g. 90s, 30m, 2h, 1h30m or 45 (seconds)"``.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value) and value >= 0:
            return float(value)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(_NUMBER, text):
            return float(text)
        match = _DURATION.fullmatch(text)
        if match and any(match.groupdict().values()):
            return sum(float(n) * _UNIT_SECONDS[unit] for unit, n in match.groupdict().items() if n)
    raise ValueError(f"invalid duration {value!r}: use e.g. 90s, 30m, 2h, 1h30m or 45 (seconds)")
