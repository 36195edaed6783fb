"""Optimizers and LR schedulers register themselves on import."""

from bigseq.optim import (
    lr_scheduler,  # noqa: F401
    optimizers,  # noqa: F401
)
