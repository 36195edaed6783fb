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
    """For a person: floats to 3 significant digits without exponents ('0.0000863', '5.12', '4,520'),
    ints plain, seconds as '12s'."""
    value = stat_value(value)
    if isinstance(value, bool) or not isinstance(value, Number):
        return str(value)
    if key in _SECONDS_KEYS:
        return f"{round(float(value))}s"
    if isinstance(value, int):
        return str(value)
    return _three_digits(float(value))


def _three_digits(value: float) -> str:
    if not math.isfinite(value) or value == 0:
        return f"{value:g}"
    if abs(value) >= 1000:
        return f"{round(value):,}"
    if abs(value) < 1e-6:  # fixed point would be a row of zeros
        return f"{value:.2e}"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


_FLOP_UNITS = ((1e15, "PFLOP/s"), (1e12, "TFLOP/s"), (1e9, "GFLOP/s"), (1e6, "MFLOP/s"), (1e3, "kFLOP/s"))


def format_pair(key: str, value: Any) -> str:
    """'key value' for the console; model TFLOP/s ('tflops') in the unit that keeps 1-3 digits before the point."""
    value = stat_value(value)
    if key == "tflops" and isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
        flops = value * 1e12
        scale, unit = next(((s, u) for s, u in _FLOP_UNITS if flops >= s), _FLOP_UNITS[-1])
        return f"model {_three_digits(flops / scale)} {unit}"
    return f"{key} {format_stat(value, key)}"


def json_value(value: Any) -> Any:
    """A JSON-serialisable value: floats at full precision (logs feed parity checks), non-finite as strings."""
    value = stat_value(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    return str(value)
