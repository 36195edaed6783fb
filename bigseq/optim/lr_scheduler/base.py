"""LR schedules as pure functions of the update number.

A schedule is ``lr_at(update) -> lr`` for a peak ``lr`` and a run of
``max_update`` updates; ``build`` wraps it in a torch ``LRScheduler`` whose
``step()`` is called once per update (by DeepSpeed), so after n steps the
optimizer's lr is ``lr_at(n)``. Its state is just the update count: resuming
recomputes the lr from the schedule, so a resumed run continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from bigseq.errors import BigseqError


@dataclass(kw_only=True)
class WarmupConfig:
    warmup_updates: int = 0
    """Warm the learning rate up linearly over the first N updates."""
    warmup_init_lr: float = 0.0
    """Learning rate at update 0 of the warmup."""


class BaseLRSchedule:
    def __init__(self, cfg, *, lr: float, max_update: int | None = None):
        if cfg.warmup_updates < 0:
            raise BigseqError(f"--warmup-updates {cfg.warmup_updates}: must be >= 0")
        self.cfg = cfg
        self.peak_lr = float(lr)
        self.max_update = max_update if max_update and max_update > 0 else None
        self.warmup_updates = cfg.warmup_updates

    @classmethod
    def build(cls, cfg, optimizer: torch.optim.Optimizer, *, lr: float, max_update: int | None = None) -> LRScheduler:
        return ScheduledLR(optimizer, cls(cfg, lr=lr, max_update=max_update))

    def lr_at(self, update: int) -> float:
        if update < self.warmup_updates:
            init = self.cfg.warmup_init_lr
            return init + (self.peak_lr - init) * update / self.warmup_updates
        return self.after_warmup(update)

    def after_warmup(self, update: int) -> float:
        raise NotImplementedError

    def total_updates(self, explicit: int | None = None, flag: str = "--total-num-update") -> int:
        """The run length this schedule decays over: ``explicit`` if given, else --max-update."""
        total = explicit if explicit is not None and explicit > 0 else self.max_update
        if total is None:
            raise BigseqError(f"--lr-scheduler {self.name} needs the run length; set --max-update N or {flag} N")
        if total <= self.warmup_updates:
            raise BigseqError(f"--warmup-updates {self.warmup_updates} must be smaller than the run length {total} "
                              f"(--max-update or {flag})")
        return total

    @property
    def name(self) -> str:
        return getattr(self, "registered_name", type(self).__name__)


class ScheduledLR(LRScheduler):
    """torch LRScheduler driven by ``schedule.lr_at``; groups keep their ratio to the peak lr."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: BaseLRSchedule):
        self.schedule = schedule
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        lr, peak = self.schedule.lr_at(self.last_epoch), self.schedule.peak_lr
        # a group at the peak lr gets lr_at exactly; others keep their ratio to the peak
        return [lr if base_lr == peak else (base_lr * lr / peak if peak else 0.0) for base_lr in self.base_lrs]

    _get_closed_form_lr = get_lr

    @property
    def num_updates(self) -> int:
        return self.last_epoch

    def state_dict(self) -> dict[str, Any]:
        # only the position: the curve itself comes from the (possibly changed) config on resume
        return {"last_epoch": self.last_epoch, "_step_count": self._step_count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("_step_count", self.last_epoch + 1))
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
