"""Skipping a whole update (optimizer step AND schedule step) when its loss is non-finite.

DeepSpeed skips overflowing steps only for fp16 loss scaling (and bf16 under
ZeRO); bigseq skips non-finite updates in every precision itself, so the
optimizer state, the weights and the LR schedule stay as they were.
"""

from __future__ import annotations

import warnings


def make_step_skippable(optimizer) -> None:
    """Give the optimizer a `skip_next_step` flag honoured by its step()."""
    original_step = optimizer.step
    optimizer.skip_next_step = False

    def step(*args, **kwargs):
        if optimizer.skip_next_step:
            return None
        return original_step(*args, **kwargs)

    optimizer.step = step


class SkippableLRScheduler:
    """Wraps a torch LR scheduler; does not advance while the optimizer skips."""

    def __init__(self, scheduler, optimizer):
        self.scheduler = scheduler
        self.optimizer = optimizer

    def step(self, *args, **kwargs):
        if not getattr(self.optimizer, "skip_next_step", False):
            with warnings.catch_warnings():
                # torch warns that optimizer.step was re-wrapped after the scheduler was built: on purpose
                warnings.filterwarnings("ignore", message=".*optimizer.step\\(\\)` has been overridden.*")
                self.scheduler.step()

    def get_last_lr(self):
        return self.scheduler.get_last_lr()

    def state_dict(self):
        return self.scheduler.state_dict()

    def load_state_dict(self, state):
        self.scheduler.load_state_dict(state)
