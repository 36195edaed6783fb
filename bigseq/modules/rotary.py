"""Rotary position embedding (RoPE), HF-Llama compatible.

Uses the ``rotate_half`` layout: the two halves of a head's dimensions form the
rotated pairs (i, i + D/2), which is how HF Llama checkpoints store q/k
weights, so they load without any permutation. A model computes cos/sin once
per forward (``RotaryEmbedding.cos_sin``) in fp32 from the absolute positions
and hands them to every layer. Nothing is stored in buffers, so a layer built
on the meta device or alone in a pipeline stage needs nothing restored.
Scaling "llama3" (Llama 3.1-3.3) rescales the inverse frequencies once, as
transformers' ``_compute_llama3_parameters`` does; "linear" (Gemma 3's global
layers) divides them all by ``factor``; positions are unchanged.
Legend: B batch, T time, H heads, D head dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

ROPE_SCALINGS = ("none", "llama3", "linear")


@dataclass(frozen=True, kw_only=True)
class RopeConfig:
    theta: float = 10000.0
    """Base frequency: dimension pair i turns at theta^(-2i / head_dim) radians per position."""
    scaling: str = "none"
    """Frequency scaling for context extension: "none", "llama3" or "linear"."""
    factor: float = 8.0
    """llama3: how much slower the low frequencies turn (the context extension factor); linear: every one."""
    low_freq_factor: float = 1.0
    """llama3: wavelengths above original_max_positions / this are divided by factor."""
    high_freq_factor: float = 4.0
    """llama3: wavelengths below original_max_positions / this are kept; those between are interpolated."""
    original_max_positions: int = 8192
    """llama3: the context length the model was pretrained with."""

    def __post_init__(self):
        if self.theta <= 0:
            raise ValueError(f"RoPE theta must be > 0, got {self.theta}")
        if self.scaling not in ROPE_SCALINGS:
            raise ValueError(f"RoPE scaling {self.scaling!r} is not supported; use one of {ROPE_SCALINGS}")
        if self.scaling == "llama3" and not (self.factor > 0 and self.original_max_positions > 0
                                             and 0 < self.low_freq_factor < self.high_freq_factor):
            raise ValueError(f"RoPE llama3 scaling needs factor > 0, original_max_positions > 0 and "
                             f"0 < low_freq_factor < high_freq_factor; got {self}")
        if self.scaling == "linear" and not self.factor > 0:
            raise ValueError(f"RoPE linear scaling needs factor > 0; got {self}")


def llama3_inv_freq(inv_freq: torch.Tensor, cfg: RopeConfig) -> torch.Tensor:
    """Llama 3.1's static rescaling: long wavelengths slow down by ``factor``, short ones stay, and the
    band between is interpolated smoothly (the same operations as transformers, so the same bits)."""
    low_freq_wavelen = cfg.original_max_positions / cfg.low_freq_factor
    high_freq_wavelen = cfg.original_max_positions / cfg.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / cfg.factor, inv_freq)
    smooth = (cfg.original_max_positions / wavelen - cfg.low_freq_factor) / (cfg.high_freq_factor
                                                                             - cfg.low_freq_factor)
    smoothed = (1 - smooth) * scaled / cfg.factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled)


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
        if self.cfg.scaling == "llama3":
            inv_freq = llama3_inv_freq(inv_freq, self.cfg)
        elif self.cfg.scaling == "linear":
            inv_freq = inv_freq / self.cfg.factor
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
