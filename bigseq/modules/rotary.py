"""Rotary position embedding (RoPE), HF-Llama compatible.

Uses the ``rotate_half`` layout: the two halves of a head's dimensions form the
rotated pairs (i, i + D/2), which is how HF Llama checkpoints store q/k
weights, so they load without any permutation. A model computes cos/sin once
per forward (``RotaryEmbedding.cos_sin``) in fp32 from the absolute positions
and hands them to every layer. Nothing is stored in buffers, so a layer built
on the meta device or alone in a pipeline stage needs nothing restored.
Legend: B batch, T time, H heads, D head dim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

ROPE_SCALINGS = ("none",)


@dataclass(frozen=True, kw_only=True)
class RopeConfig:
    theta: float = 10000.0
    """Base frequency: dimension pair i turns at theta^(-2i / head_dim) radians per position."""
    scaling: str = "none"
    """Frequency scaling for context extension; only "none" so far."""

    def __post_init__(self):
        if self.theta <= 0:
            raise ValueError(f"RoPE theta must be > 0, got {self.theta}")
        if self.scaling not in ROPE_SCALINGS:
            raise ValueError(f"RoPE scaling {self.scaling!r} is not supported; use one of {ROPE_SCALINGS}")


class RopeCosSin(NamedTuple):
    """cos and sin in fp32: (T, D) when every row shares its positions, (B, T, D) per token."""

    cos: torch.Tensor
    sin: torch.Tensor


class RotaryEmbedding:
    """cos/sin tables of one head size; holds no tensors."""

    def __init__(self, head_dim: int, cfg: RopeConfig):
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
        self.head_dim = head_dim
        self.cfg = cfg

    def cos_sin(self, seq_len: int, *, start_pos: int = 0, positions: torch.Tensor | None = None,
                device: torch.device | None = None) -> RopeCosSin:
        """For positions start_pos .. start_pos + T - 1, or per token from positions (B, T)."""
        if positions is not None:
            device = positions.device
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=device).float() / self.head_dim
        inv_freq = 1.0 / (self.cfg.theta ** exponents)
        if positions is None:
            positions = torch.arange(start_pos, start_pos + seq_len, device=device)
        freqs = positions.float()[..., None] * inv_freq  # (T, D/2) or (B, T, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return RopeCosSin(emb.cos(), emb.sin())


def rope_cos_sin(start_pos: int, seq_len: int, head_dim: int, theta: float,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (T, head_dim) in fp32 for positions start_pos .. start_pos + T - 1."""
    return tuple(RotaryEmbedding(head_dim, RopeConfig(theta=theta)).cos_sin(seq_len, start_pos=start_pos,
                                                                            device=device))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x_BTHD: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate q or k by cos/sin of shape (T, D) or (B, T, D), broadcast over the heads."""
    cos = cos.to(x_BTHD.dtype).unsqueeze(-2)
    sin = sin.to(x_BTHD.dtype).unsqueeze(-2)
    return x_BTHD * cos + rotate_half(x_BTHD) * sin
