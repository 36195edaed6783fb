"""Positional embeddings: learned (GPT-2) and sinusoidal (fairseq's default).

Both index absolute positions ``start_pos .. start_pos + T - 1`` from 0, so a
decode step with a KV cache embeds the right position; or, given ``positions``
(B, T), each token's own position (documents packed into one row restart at 0).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from bigseq.errors import BigseqError


def _check_length(last_position: int, max_positions: int) -> None:
    if last_position >= max_positions:
        raise BigseqError(f"position {last_position} is beyond the model's {max_positions} positions; "
                          f"use shorter sequences or a larger --max-target-positions")


class LearnedPositionalEmbedding(nn.Module):
    def __init__(self, max_positions: int, dim: int):
        super().__init__()
        self.max_positions = max_positions
        self.weight = nn.Parameter(torch.empty(max_positions, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, seq_len: int, start_pos: int = 0, positions: torch.Tensor | None = None) -> torch.Tensor:
        """-> (T, D), or (B, T, D) for positions (B, T)"""
        if positions is not None:
            _check_length(int(positions.max()), self.max_positions)
            return self.weight[positions]
        _check_length(start_pos + seq_len - 1, self.max_positions)
        return self.weight[start_pos:start_pos + seq_len]


class SinusoidalPositionalEmbedding(nn.Module):
    """fairseq's layout: [sin(pos * f_0..f_{D/2-1}), cos(...)] with f_i = 10000^(-i / (D/2 - 1))."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, seq_len: int, start_pos: int = 0, device=None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """-> (T, D), or (B, T, D) for positions (B, T); fp32"""
        if positions is not None:
            device = positions.device
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=device)
                          * -(math.log(10000.0) / max(half - 1, 1)))
        if positions is None:
            positions = torch.arange(start_pos, start_pos + seq_len, dtype=torch.float32, device=device)
        angles = positions.float()[..., None] * freqs  # (T, D/2) or (B, T, D/2)
        return torch.cat((angles.sin(), angles.cos()), dim=-1)
