"""LR schedules (register themselves on import); see base.py for the design."""

from bigseq.optim.lr_scheduler import cosine, fixed, inverse_sqrt, polynomial_decay, wsd  # noqa: F401
from bigseq.optim.lr_scheduler.base import BaseLRSchedule, ScheduledLR, WarmupConfig  # noqa: F401
from bigseq.registry import LR_SCHEDULER_REGISTRY


def build_lr_scheduler(name: str, cfg, optimizer, *, lr: float, max_update: int | None = None) -> ScheduledLR:
    return LR_SCHEDULER_REGISTRY.build(name, cfg, optimizer, lr=lr, max_update=max_update)


def lr_schedule(name: str, cfg, *, lr: float, max_update: int | None = None) -> BaseLRSchedule:
    """The schedule alone (``lr_at``), e.g. to print or plot a curve."""
    return LR_SCHEDULER_REGISTRY.get(name).cls(cfg, lr=lr, max_update=max_update)
