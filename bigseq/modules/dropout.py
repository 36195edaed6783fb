"""Dropout that draws its CPU mask as 31-bit random integers.

torch's CPU dropout draws a Bernoulli float per element (MKL) and then divides
and multiplies in separate passes; comparing uniform 31-bit integers with
p * 2^31 gives the same keep probability (to 2^-31) at under half the cost.
The mask comes from torch's default generator, so seeding, checkpointed RNG
state and activation-checkpoint replay behave as with torch's dropout.
Other devices, p = 1, in-place dropout and compiled graphs use torch's own.
"""

from __future__ import annotations

import torch
import torch.nn as nn

_INT31 = 2**31


class _CPUDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        bits = torch.empty(x.shape, dtype=torch.int32).random_()  # uniform on [0, 2^31)
        keep = bits >= round(p * _INT31)
        scale_mask = torch.where(keep, torch.tensor(1.0 / (1.0 - p), dtype=x.dtype), torch.tensor(0, dtype=x.dtype))
        ctx.save_for_backward(scale_mask)
        return x * scale_mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (scale_mask,) = ctx.saved_tensors
        return grad * scale_mask, None


class Dropout(nn.Dropout):
    """nn.Dropout (same arguments, same eval behaviour) with the faster CPU mask."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if (x.device.type != "cpu" or self.p == 1.0 or self.inplace or not x.is_floating_point()
                or torch.compiler.is_compiling()):  # a compiled graph fuses torch's dropout itself
            return super().forward(x)
        return _CPUDropout.apply(x, self.p)
