"""Linear layers whose CPU bf16 matmuls run through fp32 kernels where the CPU runs those faster
(bigseq.kernels.cpu_bf16 says why and when)."""

from __future__ import annotations

import torch
import torch.nn as nn

from bigseq.kernels.cpu_bf16 import linear


class Linear(nn.Linear):
    """nn.Linear (same parameters, same state dict) computing through ``bigseq.kernels.cpu_bf16.linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
