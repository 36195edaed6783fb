"""LayerNorm and the RMSNorm variants of the HF families; each normalizes in fp32.

Where the weight multiplies is what tells them apart, so each matches its family bit for bit:
"rmsnorm" (Llama) casts back to the input dtype, then scales; "rmsnorm_fp32" (OLMo 2) scales in
fp32, then casts; "rmsnorm_unit_offset" (Gemma) scales by (1 + weight) in fp32, then casts, and its
weight starts at zero (the identity; the init rules key on UNIT_OFFSET_NORMS).
"""

from __future__ import annotations

import torch
import torch.nn as nn

NORMS = ("layernorm", "rmsnorm", "rmsnorm_fp32", "rmsnorm_unit_offset")
RMS_NORMS = ("rmsnorm", "rmsnorm_fp32", "rmsnorm_unit_offset")
UNIT_OFFSET_NORMS = ("rmsnorm_unit_offset",)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def normalized(self, x: torch.Tensor) -> torch.Tensor:
        """x / rms(x) in fp32."""
        x32 = x.float()
        return x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * self.normalized(x).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class FP32ScaleRMSNorm(RMSNorm):
    """OLMo 2's: weight * x_norm multiplied in fp32, then cast to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.weight * self.normalized(x)).to(x.dtype)


class UnitOffsetRMSNorm(RMSNorm):
    """Gemma's: x_norm * (1 + weight) in fp32, then cast; a zero weight is the identity scale."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__(dim, eps)
        nn.init.zeros_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.normalized(x) * (1.0 + self.weight.float())).to(x.dtype)


_RMS_CLASSES = {"rmsnorm": RMSNorm, "rmsnorm_fp32": FP32ScaleRMSNorm, "rmsnorm_unit_offset": UnitOffsetRMSNorm}


def build_norm(kind: str, dim: int, eps: float, bias: bool = True) -> nn.Module:
    """kind: one of NORMS (the RMSNorms never have a bias)."""
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    if kind in _RMS_CLASSES:
        return _RMS_CLASSES[kind](dim, eps=eps)
    raise ValueError(f"unknown norm '{kind}'; use one of {NORMS}")
