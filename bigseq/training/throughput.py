"""Tokens/s and model TFLOP/s between two log points."""

from __future__ import annotations

import time


class Throughput:
    def __init__(self, flops_per_token: float):
        self.flops_per_token = flops_per_token
        self.start = time.perf_counter()
        self.tokens = 0.0

    def add(self, ntokens: float) -> None:
        self.tokens += ntokens

    def read_and_reset(self) -> dict[str, float]:
        now = time.perf_counter()
        elapsed = max(now - self.start, 1e-9)
        tps = self.tokens / elapsed
        self.start, self.tokens = now, 0.0
        return {"tokens_per_s": tps, "tflops": tps * self.flops_per_token / 1e12}
