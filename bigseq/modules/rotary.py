"""Rotary position embedding (RoPE), HF-Llama compatible.

Uses the ``rotate_half`` layout: the two halves of a head's dimensions form the
rotated pairs (i, i + D/2), which is how HF Llama checkpoints store q/k
weights, so they load without any permutation. cos/sin are computed in fp32
from the absolute positions on every call: no buffer, so a layer built on the
meta device or alone in a pipeline stage needs nothing restored.
"""

from __future__ import annotations

import torch


def rope_cos_sin(start_pos: int, seq_len: int, head_dim: int, theta: float,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (T, head_dim) in fp32 for positions start_pos .. start_pos + T - 1."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
    positions = torch.arange(start_pos, start_pos + seq_len, device=device).float()
    freqs_TF = torch.outer(positions, inv_freq)
    emb_TD = torch.cat((freqs_TF, freqs_TF), dim=-1)
    return emb_TD.cos(), emb_TD.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x_BTHD: torch.Tensor, cos_TD: torch.Tensor, sin_TD: torch.Tensor) -> torch.Tensor:
    cos = cos_TD.to(x_BTHD.dtype)[None, :, None, :]
    sin = sin_TD.to(x_BTHD.dtype)[None, :, None, :]
    return x_BTHD * cos + rotate_half(x_BTHD) * sin
