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
Scaling "longrope" (Phi-3 128k, Phi-3.5, Phi-4-mini) divides each frequency by a
per-frequency factor from one of two lists and multiplies cos/sin by an attention
factor. The list is chosen per call from its largest position, as transformers'
``dynamic_rope_update`` does: the long factors when max position + 1 exceeds the
pretraining length, else the short ones. So a decode step past that length rotates
its new token with the long factors while the cached keys keep the short ones, as
in HF generation; the choice is a ``torch.where`` on a per-token positions tensor,
so it needs no host sync.
``partial_factor`` < 1 (Phi-3's partial_rotary_factor) rotates only the first
int(head_dim * partial_factor) dims of each head, the rest pass through unchanged;
cos/sin are then that narrow and ``apply_rope`` splits the head by their width.
Legend: B batch, T time, H heads, D head dim (R: the rotated dims).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

ROPE_SCALINGS = ("none", "llama3", "longrope", "linear")


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
    """llama3, longrope: the context length the model was pretrained with."""
    short_factor: tuple[float, ...] = ()
    """longrope: one divisor per rotated frequency, used while max position + 1 <= original_max_positions."""
    long_factor: tuple[float, ...] = ()
    """longrope: one divisor per rotated frequency, used past original_max_positions."""
    attention_factor: float = 1.0
    """longrope: the multiplier of cos and sin (``longrope_attention_factor`` is transformers' default)."""
    partial_factor: float = 1.0
    """Fraction of each head's dims that is rotated: the first int(head_dim * partial_factor)."""

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
        if self.scaling == "longrope" and not (self.original_max_positions > 0 and self.attention_factor > 0
                                               and len(self.short_factor) == len(self.long_factor) > 0):
            raise ValueError(f"RoPE longrope scaling needs original_max_positions > 0, attention_factor > 0 and "
                             f"short and long factor lists of one length; got {self}")
        if not 0 < self.partial_factor <= 1:
            raise ValueError(f"RoPE partial_factor must be in (0, 1], got {self.partial_factor}")

    def rotary_dim(self, head_dim: int) -> int:
        """How many dims of a head of ``head_dim`` are rotated (transformers' int(head_dim * factor))."""
        return int(head_dim * self.partial_factor)


def longrope_attention_factor(max_positions: int, original_max_positions: int) -> float:
    """transformers' default longrope cos/sin multiplier for factor = max_positions / original_max_positions:
    sqrt(1 + ln(factor) / ln(original_max_positions)), 1 when the factor is <= 1."""
    factor = max_positions / original_max_positions
    if factor <= 1.0:
        return 1.0
    return math.sqrt(1 + math.log(factor) / math.log(original_max_positions))


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
        self.rotary_dim = cfg.rotary_dim(head_dim)
        if self.rotary_dim < 2 or self.rotary_dim % 2:
            raise ValueError(f"RoPE needs an even number (>= 2) of rotated dims, got {self.rotary_dim} "
                             f"(head_dim {head_dim} x partial_factor {cfg.partial_factor})")
        if cfg.scaling == "longrope" and len(cfg.short_factor) != self.rotary_dim // 2:
            raise ValueError(f"RoPE longrope needs {self.rotary_dim // 2} short and long factors (one per rotated "
                             f"frequency), got {len(cfg.short_factor)}")
        self.cfg = cfg

    def cos_sin(self, seq_len: int, *, start_pos: int = 0, positions: torch.Tensor | None = None,
                device: torch.device | None = None) -> RopeCosSin:
        """For positions start_pos .. start_pos + T - 1, or per token from positions (B, T); (.., R) wide."""
        if positions is not None:
            device = positions.device
        dim = self.rotary_dim
        exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim
        if self.cfg.scaling == "longrope":
            inv_freq = self._longrope_inv_freq(exponents, seq_len, start_pos, positions)
        else:
            inv_freq = 1.0 / (self.cfg.theta ** exponents)
        if self.cfg.scaling == "llama3":
            inv_freq = llama3_inv_freq(inv_freq, self.cfg)
        elif self.cfg.scaling == "linear":
            inv_freq = inv_freq / self.cfg.factor
        if positions is None:
            positions = torch.arange(start_pos, start_pos + seq_len, device=device)
        freqs = positions.float()[..., None] * inv_freq  # (T, R/2) or (B, T, R/2)
        emb = torch.cat((freqs, freqs), dim=-1)
        if self.cfg.scaling == "longrope":  # transformers' attention_scaling, applied in fp32 before any cast
            return RopeCosSin(emb.cos() * self.cfg.attention_factor, emb.sin() * self.cfg.attention_factor)
        return RopeCosSin(emb.cos(), emb.sin())

    def _longrope_inv_freq(self, exponents: torch.Tensor, seq_len: int, start_pos: int,
                           positions: torch.Tensor | None) -> torch.Tensor:
        """The short or long set, by transformers' rule: long when max(position) + 1 > original_max_positions."""
        def inv_freq(factors: tuple[float, ...]) -> torch.Tensor:
            ext = torch.tensor(factors, dtype=torch.float32, device=exponents.device)
            return 1.0 / (ext * self.cfg.theta ** exponents)
        limit = self.cfg.original_max_positions
        if positions is None:
            return inv_freq(self.cfg.long_factor if start_pos + seq_len > limit else self.cfg.short_factor)
        return torch.where(positions.max() + 1 > limit, inv_freq(self.cfg.long_factor), inv_freq(self.cfg.short_factor))


def rope_cos_sin(start_pos: int, seq_len: int, head_dim: int, theta: float,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (T, head_dim) in fp32 for positions start_pos .. start_pos + T - 1."""
    return tuple(RotaryEmbedding(head_dim, RopeConfig(theta=theta)).cos_sin(seq_len, start_pos=start_pos,
                                                                            device=device))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x_BTHD: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate q or k by cos/sin of shape (T, R) or (B, T, R), broadcast over the heads; with R < D only
    the first R dims of each head are rotated (rotate_half within them), the rest pass through."""
    cos = cos.to(x_BTHD.dtype).unsqueeze(-2)
    sin = sin.to(x_BTHD.dtype).unsqueeze(-2)
    rotary_dim = cos.shape[-1]
    if rotary_dim == x_BTHD.shape[-1]:
        return x_BTHD * cos + rotate_half(x_BTHD) * sin
    x_rot, x_pass = x_BTHD[..., :rotary_dim], x_BTHD[..., rotary_dim:]
    return torch.cat((x_rot * cos + rotate_half(x_rot) * sin, x_pass), dim=-1)
