"""wsd: warmup, stable at the peak lr, then decay to --min-lr over the last part of the run.

The decay phase is the last --decay-updates updates (or --decay-fraction of the
run); its shape is linear, cosine or 1-sqrt (lr scaled by 1 - sqrt(progress)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from bigseq.errors import BigseqError
from bigseq.optim.lr_scheduler.base import BaseLRSchedule, WarmupConfig
from bigseq.registry import register_lr_scheduler

_SHAPES = {
    "linear": lambda p: 1.0 - p,
    "cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * p)),
    "1-sqrt": lambda p: 1.0 - math.sqrt(p),
}


@dataclass(kw_only=True)
class WSDConfig(WarmupConfig):
    decay_fraction: float = 0.1
    """Fraction of the run spent decaying (ignored when --decay-updates is set)."""
    decay_updates: int | None = None
    """Length of the decay phase in updates (default: --decay-fraction of the run)."""
    decay_shape: Literal["linear", "cosine", "1-sqrt"] = "1-sqrt"
    """Shape of the decay from the peak lr to --min-lr."""
    min_lr: float = 0.0
    """Learning rate at the end of the decay (and after it)."""
    total_num_update: int | None = None
    """Length of the run in updates (default: --max-update)."""


@register_lr_scheduler("wsd", WSDConfig)
class WSDSchedule(BaseLRSchedule):
    registered_name = "wsd"

    def __init__(self, cfg, *, lr: float, max_update: int | None = None):
        super().__init__(cfg, lr=lr, max_update=max_update)
        self.total = self.total_updates(cfg.total_num_update)
        if cfg.decay_updates is not None:
            self.decay_updates = cfg.decay_updates
        elif 0.0 <= cfg.decay_fraction <= 1.0:
            self.decay_updates = round(cfg.decay_fraction * self.total)
        else:
            raise BigseqError(f"--decay-fraction {cfg.decay_fraction}: must be in [0, 1]")
        if not 0 <= self.decay_updates <= self.total - self.warmup_updates:
            raise BigseqError(f"wsd decay of {self.decay_updates} updates does not fit after "
                              f"{self.warmup_updates} warmup updates in a run of {self.total}; "
                              "shorten --decay-updates/--decay-fraction or --warmup-updates")
        self.decay_start = self.total - self.decay_updates

    def after_warmup(self, update: int) -> float:
        if update < self.decay_start:
            return self.peak_lr
        progress = min((update - self.decay_start) / max(self.decay_updates, 1), 1.0)
        lo = self.cfg.min_lr
        return lo + (self.peak_lr - lo) * _SHAPES[self.cfg.decay_shape](progress)
