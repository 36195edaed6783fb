"""What the pipeline trainer needs from DeepSpeed's PipelineModule/PipelineEngine beyond their public calls.

DeepSpeed clips fp32 gradients of a pipeline stage by that stage's norm alone; the
plain model clips by the norm of all its parameters. ``GlobalGradNorm`` replaces the
engine's fp32 clipping with the norm over every stage, and skips the optimizer step
(and the schedule) when that norm is not finite, as the plain trainer does.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist


def data_parallel_rank(module) -> int:
    """This rank's data-parallel index inside its stage (the grid DeepSpeed laid out, stage-major)."""
    return module._grid.data_parallel_id


def is_replicated(param: torch.Tensor) -> bool:
    """A tied module's parameter held by several stages (counted once, on its first stage)."""
    return getattr(param, "ds_pipe_replicated", False)


class GlobalGradNorm:
    """fp32 without ZeRO: the norm over all stages right before clipping/stepping, clip by it, log it."""

    def __init__(self, engine, optimizer, module):
        self.value: float | None = None
        self._params = [p for p in module.parameters() if not is_replicated(p)]
        self._all_params = list(module.parameters())
        self._group = module._grid.get_pipe_parallel_group()
        self._max_norm = engine.gradient_clipping()
        self._optimizer, self._step = optimizer, optimizer.step
        engine.clip_fp32_gradients = self._norm_then_clip
        optimizer.step = self._step_after_norm

    def reset(self) -> None:
        self.value = None

    def _compute(self) -> None:
        grads = [p.grad.detach().double() for p in self._params if p.grad is not None]
        sq = torch.stack([g.pow(2).sum() for g in grads]).sum() if grads else torch.zeros((), dtype=torch.float64)
        dist.all_reduce(sq, group=self._group)
        self.value = math.sqrt(float(sq))

    def _norm_then_clip(self) -> None:
        # logged before clipping, as the plain trainer does
        self._compute()
        coef = min(1.0, self._max_norm / (self.value + 1e-6))
        for p in self._all_params:
            if p.grad is not None:
                p.grad.mul_(coef)

    def _step_after_norm(self, *args, **kwargs):
        if self.value is None:
            self._compute()
        if not math.isfinite(self.value):
            self._optimizer.skip_next_step = True  # cleared by the trainer, after the schedule's step
        return self._step(*args, **kwargs)
