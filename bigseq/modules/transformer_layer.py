"""Transformer layers, pre-norm (GPT-2/Llama) or post-norm (fairseq's default).

TransformerDecoderLayer: causal self-attention [+ cross-attention over the encoder
output] + feed-forward. TransformerEncoderLayer: bidirectional self-attention +
feed-forward. Both name their parts attn_norm, attn.{q,k,v,out}_proj, ffn_norm,
ffn.*; q/k normalization adds attn.{q,k}_norm; the decoder's cross-attention adds
cross_attn_norm and cross_attn.*.
Init by name, the HF key maps and saved checkpoints key on these names.
Legend: B batch, T time, S source time, D dim.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn as nn

from bigseq.modules.attention import SelfAttention
from bigseq.modules.cross_attention import CrossAttention
from bigseq.modules.dropout import Dropout
from bigseq.modules.feedforward import build_feedforward
from bigseq.modules.kv_cache import LayerKVCache
from bigseq.modules.norms import build_norm
from bigseq.modules.rotary import RopeConfig, RopeCosSin


def residual(x_BTD: torch.Tensor, sublayer: Callable[[torch.Tensor], torch.Tensor], norm: nn.Module,
             dropout: nn.Module, normalize_before: bool) -> torch.Tensor:
    """Pre-norm x + dropout(f(norm(x))), or post-norm norm(x + dropout(f(x)))."""
    if normalize_before:
        return x_BTD + dropout(sublayer(norm(x_BTD)))
    return norm(x_BTD + dropout(sublayer(x_BTD)))


class TransformerDecoderLayer(nn.Module):
    def __init__(self, *, dim: int, num_heads: int, ffn_dim: int, num_kv_heads: int | None = None,
                 activation_fn: str = "gelu", norm: str = "layernorm", norm_eps: float = 1e-5,
                 bias: bool = True, normalize_before: bool = True, rope: RopeConfig | None = None,
                 window: int | None = None, cross_attention: bool = False, encoder_dim: int | None = None,
                 dropout: float = 0.0, activation_dropout: float = 0.0, attention_impl: str = "torch",
                 head_dim: int | None = None, qkv_bias: bool | None = None, out_bias: bool | None = None,
                 mlp_bias: bool | None = None, qk_norm: str = "none"):
        """bias switches the norms' biases and, unless qkv_bias / out_bias / mlp_bias say otherwise
        (None: follow bias), the projections'. head_dim, qk_norm: see SelfAttention."""
        super().__init__()
        self.normalize_before = normalize_before
        self.attn_norm = build_norm(norm, dim, norm_eps, bias)
        self.attn = SelfAttention(dim, num_heads, num_kv_heads=num_kv_heads, bias=bias, rope=rope, causal=True,
                                  window=window, attention_impl=attention_impl, head_dim=head_dim,
                                  qkv_bias=qkv_bias, out_bias=out_bias, qk_norm=qk_norm, norm_eps=norm_eps)
        self.cross_attn_norm = build_norm(norm, dim, norm_eps, bias) if cross_attention else None
        self.cross_attn = (CrossAttention(dim, num_heads, encoder_dim=encoder_dim, num_kv_heads=num_kv_heads,
                                          bias=bias, attention_impl=attention_impl) if cross_attention else None)
        self.ffn_norm = build_norm(norm, dim, norm_eps, bias)
        self.ffn = build_feedforward(dim, ffn_dim, activation_fn, bias=bias if mlp_bias is None else mlp_bias,
                                     activation_dropout=activation_dropout)
        self.dropout = Dropout(dropout)

    def forward(self, x_BTD: torch.Tensor, *, rope: RopeCosSin | None = None, start_pos: int = 0,
                positions: torch.Tensor | None = None, kv_cache: LayerKVCache | None = None,
                cu_seqlens: torch.Tensor | None = None, encoder_out: torch.Tensor | None = None,
                encoder_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D); encoder_out (B, S, E) and encoder_padding_mask (B, S) for cross-attention
        (while decoding, the KV cache keeps the encoder's keys/values after the first step)."""
        attend = partial(self.attn, rope=rope, start_pos=start_pos, positions=positions, kv_cache=kv_cache,
                         cu_seqlens=cu_seqlens)
        x_BTD = residual(x_BTD, attend, self.attn_norm, self.dropout, self.normalize_before)
        if self.cross_attn is not None:
            attend_source = partial(self.cross_attn, encoder_out_BSE=encoder_out,
                                    key_padding_mask=encoder_padding_mask,
                                    cache=kv_cache.cross_attn if kv_cache is not None else None)
            x_BTD = residual(x_BTD, attend_source, self.cross_attn_norm, self.dropout, self.normalize_before)
        elif encoder_out is not None:
            raise ValueError("encoder_out given to a decoder layer built without cross_attention")
        return residual(x_BTD, self.ffn, self.ffn_norm, self.dropout, self.normalize_before)


class TransformerEncoderLayer(nn.Module):
    def __init__(self, *, dim: int, num_heads: int, ffn_dim: int, num_kv_heads: int | None = None,
                 activation_fn: str = "relu", norm: str = "layernorm", norm_eps: float = 1e-5,
                 bias: bool = True, normalize_before: bool = False, rope: RopeConfig | None = None,
                 dropout: float = 0.0, activation_dropout: float = 0.0, attention_impl: str = "torch"):
        super().__init__()
        self.normalize_before = normalize_before
        self.attn_norm = build_norm(norm, dim, norm_eps, bias)
        self.attn = SelfAttention(dim, num_heads, num_kv_heads=num_kv_heads, bias=bias, rope=rope, causal=False,
                                  attention_impl=attention_impl)
        self.ffn_norm = build_norm(norm, dim, norm_eps, bias)
        self.ffn = build_feedforward(dim, ffn_dim, activation_fn, bias=bias, activation_dropout=activation_dropout)
        self.dropout = Dropout(dropout)

    def forward(self, x_BTD: torch.Tensor, *, padding_mask: torch.Tensor | None = None,
                rope: RopeCosSin | None = None, positions: torch.Tensor | None = None,
                cu_seqlens: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D), padding_mask (B, T) True at padding: no position attends to a padded one."""
        attend = partial(self.attn, rope=rope, positions=positions, cu_seqlens=cu_seqlens,
                         key_padding_mask=padding_mask)
        x_BTD = residual(x_BTD, attend, self.attn_norm, self.dropout, self.normalize_before)
        return residual(x_BTD, self.ffn, self.ffn_norm, self.dropout, self.normalize_before)
