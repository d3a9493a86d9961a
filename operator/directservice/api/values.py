"""Checked scalar values of a DirectService spec: durations, objects, bounded integers.

Pure; shared by the spec parser and the providers' own spec sections.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class SpecError(ValueError):
    """The DirectService spec cannot be used; the message names the field and is shown."""


def parse_duration(text: Any, field_name: str) -> float:
    """Parse a Go-style duration ("5s", "1m30s", "250ms") into seconds."""
    value = text.strip() if isinstance(text, str) else ""
    parts = _DURATION_PART.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise SpecError(f"{field_name}: {str(text)[:40]!r} is not a duration like 5s, 1m or 1m30s")
    total = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if not math.isfinite(total):
        raise SpecError(f"{field_name}: {str(text)[:40]!r} is too long")
    return total


def format_duration(seconds: float) -> str:
    """The inverse of parse_duration for display: 5.0 → "5s", 90 → "1m30s"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    if minutes and secs:
        return f"{minutes}m{secs}s"
    return f"{minutes}m" if minutes else f"{secs}s"


def mapping(
    value: Any, where: str, *, default: Mapping[str, Any] | None = None
) -> Mapping[str, Any]:
    """`value` as an object; None gives `default` (if any). Anything else names `where`."""
    if value is None and default is not None:
        return default
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be an object, not {type(value).__name__}")
    return value


def integer(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"{where} must be an integer between {low} and {high}")
    return value
