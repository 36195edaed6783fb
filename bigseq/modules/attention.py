"""Causal self-attention: q/k/v/out projections, optional RoPE and grouped-query heads.

The attention itself is ``bigseq.kernels.attention`` (B, S, H, D layout), whose
causal mask is aligned to the end of the keys, so a decode step with a KV
cache attends to every cached position.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from bigseq import kernels
from bigseq.modules.kv_cache import LayerKVCache
from bigseq.modules.rotary import apply_rope, rope_cos_sin


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, *, num_kv_heads: int | None = None, bias: bool = True,
                 rope_theta: float | None = None, attention_impl: str = "torch"):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads or num_heads
        self.head_dim = dim // num_heads
        self.rope_theta = rope_theta
        self.attention_impl = attention_impl
        self.q_proj = nn.Linear(dim, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(dim, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(dim, self.num_kv_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(self.num_heads * self.head_dim, dim, bias=bias)

    def forward(self, x_BTD: torch.Tensor, *, start_pos: int = 0,
                kv_cache: LayerKVCache | None = None) -> torch.Tensor:
        B, T, _ = x_BTD.shape
        q = self.q_proj(x_BTD).view(B, T, self.num_heads, self.head_dim)
        k = self.k_proj(x_BTD).view(B, T, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x_BTD).view(B, T, self.num_kv_heads, self.head_dim)
        if self.rope_theta is not None:
            cos, sin = rope_cos_sin(start_pos, T, self.head_dim, self.rope_theta, x_BTD.device)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.update(start_pos, k, v)
        if kv_cache is not None and T == 1:
            # one-token decode step: the split-K decode kernel on CUDA (torch reference elsewhere)
            seqlens_B = torch.full((B,), k.shape[1], dtype=torch.int32, device=q.device)
            impl = "auto" if self.attention_impl in ("auto", "cuda") else "torch"
            out_BTHD = kernels.decode_attention(q[:, 0], k, v, seqlens_B, impl=impl).unsqueeze(1)
        else:
            out_BTHD = kernels.attention(q, k, v, causal=True, impl=self.attention_impl)
        return self.out_proj(out_BTHD.reshape(B, T, self.num_heads * self.head_dim))
