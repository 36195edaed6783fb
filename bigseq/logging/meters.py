"""Meters: running averages, throughput and stopwatches, with state for resume."""

from __future__ import annotations

import time
from typing import Any


class AverageMeter:
    """Weighted running average (e.g. loss per token over a log interval)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.val, self.sum, self.count = 0.0, 0.0, 0

    def update(self, val: float, n: int = 1) -> None:
        self.val = float(val)
        self.sum += float(val) * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / self.count if self.count > 0 else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"val": self.val, "sum": self.sum, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.val, self.sum, self.count = state["val"], state["sum"], state["count"]


class TimeMeter:
    """Throughput: items counted per second of wall time since (re)start.

    ``init`` carries elapsed seconds over a resume, so 'wall' keeps counting.
    """

    def __init__(self, init: float = 0.0, n: int = 0):
        self.reset(init, n)

    def reset(self, init: float = 0.0, n: int = 0) -> None:
        self.init, self.n, self.start = init, n, time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n

    @property
    def elapsed_time(self) -> float:
        return self.init + (time.perf_counter() - self.start)

    @property
    def avg(self) -> float:
        elapsed = self.elapsed_time
        return self.n / elapsed if elapsed > 0 else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"init": self.elapsed_time, "n": self.n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset(state["init"], state["n"])


class StopwatchMeter:
    """Sums the durations of start()/stop() intervals (e.g. time per update)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sum, self.n, self.start_time = 0.0, 0, None

    def start(self) -> None:
        self.start_time = time.perf_counter()

    def stop(self, n: int = 1) -> float:
        """End the running interval, count ``n`` items in it; returns its duration (0 if not started)."""
        if self.start_time is None:
            return 0.0
        delta = time.perf_counter() - self.start_time
        self.sum += delta
        self.n += n
        self.start_time = None
        return delta

    @property
    def avg(self) -> float:
        """Seconds per item."""
        return self.sum / self.n if self.n > 0 else 0.0

    @property
    def elapsed_time(self) -> float:
        """Total measured seconds, including the interval still running."""
        running = time.perf_counter() - self.start_time if self.start_time is not None else 0.0
        return self.sum + running

    def state_dict(self) -> dict[str, Any]:
        return {"sum": self.sum, "n": self.n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset()
        self.sum, self.n = state["sum"], state["n"]
