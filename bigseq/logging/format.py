"""Turning stats into short readable strings and JSON-safe numbers."""

from __future__ import annotations

import math
from numbers import Number
from typing import Any

# keys whose value is seconds: shown as "12s"
_SECONDS_KEYS = {"wall", "train_wall", "time"}


def stat_value(value: Any) -> Any:
    """A meter, 0-d tensor or number -> a plain Python number (other values unchanged)."""
    if hasattr(value, "avg"):
        value = value.avg
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    return value


def format_stat(value: Any, key: str | None = None) -> str:
    """Floats to 4 significant figures (integers above 1000), ints plain, seconds as '12s'."""
    value = stat_value(value)
    if isinstance(value, bool) or not isinstance(value, Number):
        return str(value)
    if key in _SECONDS_KEYS:
        return f"{round(float(value))}s"
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return str(round(value))
    return f"{value:.4g}"


def json_value(value: Any) -> Any:
    """A JSON-serialisable value: floats at full precision (logs feed parity checks), non-finite as strings."""
    value = stat_value(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    return str(value)
