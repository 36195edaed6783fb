"""polynomial_decay (fairseq): warmup, then (lr - end) * (1 - progress)^power + end."""

from __future__ import annotations

from dataclasses import dataclass

from bigseq.optim.lr_scheduler.base import BaseLRSchedule, WarmupConfig
from bigseq.registry import register_lr_scheduler


@dataclass(kw_only=True)
class PolynomialDecayConfig(WarmupConfig):
    end_learning_rate: float = 0.0
    """Learning rate at the end of the decay (and after it)."""
    power: float = 1.0
    """Exponent of the decay (1: linear)."""
    total_num_update: int | None = None
    """Updates over which to decay (default: --max-update)."""


@register_lr_scheduler("polynomial_decay", PolynomialDecayConfig)
class PolynomialDecaySchedule(BaseLRSchedule):
    registered_name = "polynomial_decay"

    def __init__(self, cfg, *, lr: float, max_update: int | None = None):
        super().__init__(cfg, lr=lr, max_update=max_update)
        self.total = self.total_updates(cfg.total_num_update)

    def after_warmup(self, update: int) -> float:
        end = self.cfg.end_learning_rate
        if update >= self.total:
            return end
        remaining = 1 - (update - self.warmup_updates) / (self.total - self.warmup_updates)
        return (self.peak_lr - end) * remaining ** self.cfg.power + end
