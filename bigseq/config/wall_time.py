"""--max-wall-time: a duration in seconds or H:MM:SS."""

from __future__ import annotations

from bigseq.errors import BigseqError


def parse_wall_time(text: str | None) -> float | None:
    """'5400', '90.5', '1:30:00' (H:MM:SS) or '30:00' (MM:SS) -> seconds; None -> no limit."""
    if text is None or str(text).strip() == "":
        return None
    parts = str(text).strip().split(":")
    try:
        if len(parts) > 3 or any(p.strip() == "" for p in parts):
            raise ValueError
        seconds = 0.0
        for p in parts:
            seconds = seconds * 60 + float(p)
    except ValueError:
        raise BigseqError(f"--max-wall-time {text!r} is not a duration; give seconds (5400) or "
                          f"HH:MM:SS (1:30:00)") from None
    if seconds <= 0:
        raise BigseqError(f"--max-wall-time {text!r} must be positive; give seconds (5400) or HH:MM:SS (1:30:00)")
    return seconds
