"""fixed: optional linear warmup, then the peak lr for ever."""

from __future__ import annotations

from dataclasses import dataclass

from bigseq.optim.lr_scheduler.base import BaseLRSchedule, WarmupConfig
from bigseq.registry import register_lr_scheduler


@dataclass(kw_only=True)
class FixedConfig(WarmupConfig):
    pass


@register_lr_scheduler("fixed", FixedConfig)
class FixedSchedule(BaseLRSchedule):
    registered_name = "fixed"

    def after_warmup(self, update: int) -> float:
        return self.peak_lr
