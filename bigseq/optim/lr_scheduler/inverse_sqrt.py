"""inverse_sqrt (fairseq): warmup, then lr * sqrt(warmup_updates / update)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bigseq.optim.lr_scheduler.base import BaseLRSchedule, WarmupConfig
from bigseq.registry import register_lr_scheduler


@dataclass(kw_only=True)
class InverseSqrtConfig(WarmupConfig):
    warmup_updates: int = 4000
    """Warm the learning rate up linearly over the first N updates; the decay is anchored at N."""


@register_lr_scheduler("inverse_sqrt", InverseSqrtConfig)
class InverseSqrtSchedule(BaseLRSchedule):
    registered_name = "inverse_sqrt"

    def after_warmup(self, update: int) -> float:
        # with no warmup the decay is anchored at update 1 (update 0 gets the peak lr)
        anchor = max(self.warmup_updates, 1)
        return self.peak_lr * math.sqrt(anchor / max(update, anchor))
