"""One decoder layer: self-attention + feed-forward, pre-norm (GPT-2/Llama) or post-norm (fairseq default)."""

from __future__ import annotations

import torch
import torch.nn as nn

from bigseq.modules.attention import SelfAttention
from bigseq.modules.dropout import Dropout
from bigseq.modules.feedforward import build_feedforward
from bigseq.modules.kv_cache import LayerKVCache
from bigseq.modules.norms import build_norm


class TransformerDecoderLayer(nn.Module):
    def __init__(self, *, dim: int, num_heads: int, ffn_dim: int, num_kv_heads: int | None = None,
                 activation_fn: str = "gelu", norm: str = "layernorm", norm_eps: float = 1e-5,
                 bias: bool = True, normalize_before: bool = True, rope_theta: float | None = None,
                 dropout: float = 0.0, activation_dropout: float = 0.0, attention_impl: str = "torch"):
        super().__init__()
        self.normalize_before = normalize_before
        self.attn_norm = build_norm(norm, dim, norm_eps, bias)
        self.attn = SelfAttention(dim, num_heads, num_kv_heads=num_kv_heads, bias=bias, rope_theta=rope_theta,
                                  attention_impl=attention_impl)
        self.ffn_norm = build_norm(norm, dim, norm_eps, bias)
        self.ffn = build_feedforward(dim, ffn_dim, activation_fn, bias=bias, activation_dropout=activation_dropout)
        self.dropout = Dropout(dropout)

    def forward(self, x_BTD: torch.Tensor, *, start_pos: int = 0,
                kv_cache: LayerKVCache | None = None) -> torch.Tensor:
        if self.normalize_before:
            x_BTD = x_BTD + self.dropout(self.attn(self.attn_norm(x_BTD), start_pos=start_pos, kv_cache=kv_cache))
            return x_BTD + self.dropout(self.ffn(self.ffn_norm(x_BTD)))
        x_BTD = self.attn_norm(x_BTD + self.dropout(self.attn(x_BTD, start_pos=start_pos, kv_cache=kv_cache)))
        return self.ffn_norm(x_BTD + self.dropout(self.ffn(x_BTD)))
