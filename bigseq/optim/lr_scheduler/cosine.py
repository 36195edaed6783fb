"""cosine (fairseq, SGDR): warmup, then cosine from --lr to --min-lr.

Without --lr-period-updates there is one period, ending at --max-update, and the
lr stays at --min-lr after it. With it, the cosine restarts every period (each
--t-mult times longer), the peak and floor shrunk by --lr-shrink per restart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bigseq.errors import BigseqError
from bigseq.optim.lr_scheduler.base import BaseLRSchedule, WarmupConfig
from bigseq.registry import register_lr_scheduler


@dataclass(kw_only=True)
class CosineConfig(WarmupConfig):
    min_lr: float = 0.0
    """Learning rate at the end of each cosine period."""
    lr_period_updates: int = 0
    """Updates per cosine period (0: one period, from the end of warmup to --max-update)."""
    t_mult: float = 1.0
    """Each period is t_mult times longer than the previous one."""
    lr_shrink: float = 0.1
    """Peak and min lr are multiplied by this at each restart."""


@register_lr_scheduler("cosine", CosineConfig)
class CosineSchedule(BaseLRSchedule):
    registered_name = "cosine"

    def __init__(self, cfg, *, lr: float, max_update: int | None = None):
        super().__init__(cfg, lr=lr, max_update=max_update)
        if cfg.min_lr > lr:
            raise BigseqError(f"--min-lr {cfg.min_lr} is above --lr {lr}; lower it")
        if cfg.t_mult <= 0:
            raise BigseqError(f"--t-mult {cfg.t_mult}: must be > 0")
        self.restarts = cfg.lr_period_updates > 0
        self.period = cfg.lr_period_updates if self.restarts else \
            self.total_updates(flag="--lr-period-updates") - self.warmup_updates

    def after_warmup(self, update: int) -> float:
        cfg = self.cfg
        t = update - self.warmup_updates
        if not self.restarts:
            i, t_i, t_cur = 0, self.period, min(t, self.period)
        elif cfg.t_mult != 1:
            i = math.floor(math.log(1 - t / self.period * (1 - cfg.t_mult), cfg.t_mult))
            t_i = cfg.t_mult ** i * self.period
            t_cur = t - (1 - cfg.t_mult ** i) / (1 - cfg.t_mult) * self.period
        else:
            i, t_i = t // self.period, self.period
            t_cur = t - i * self.period
        shrink = cfg.lr_shrink ** i
        lo, hi = cfg.min_lr * shrink, self.peak_lr * shrink
        return lo + 0.5 * (hi - lo) * (1 + math.cos(math.pi * t_cur / t_i))
