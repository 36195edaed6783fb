"""Transformer layers: where each sublayer's norm sits, and the layers built from them.

A decoder layer's norm placement is one of NORM_PLACEMENTS:
  pre      x + f(norm(x))                  GPT-2, Llama
  post     norm(x + f(x))                  fairseq's default
  sandwich x + post_norm(f(pre_norm(x)))   Gemma 2/3: two norms per sublayer
  output   x + post_norm(f(x))             OLMo 2: no norm on the sublayer's input
(dropout, when on, applies to f's output before the add, or to the post norm's.)

TransformerDecoderLayer: causal self-attention [+ cross-attention over the encoder
output] + feed-forward. TransformerEncoderLayer: bidirectional self-attention +
feed-forward. Both name their parts attn_norm, attn.{q,k,v,out}_proj, ffn_norm,
ffn.*; the norms on a sublayer's output (sandwich, output) are attn_post_norm and
ffn_post_norm (with output placement attn_norm/ffn_norm are None); q/k
normalization adds attn.{q,k}_norm; the decoder's cross-attention adds
cross_attn_norm and cross_attn.* (pre or post placement only).
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
from bigseq.modules.norms import RMS_NORMS, build_norm
from bigseq.modules.rotary import RopeConfig, RopeCosSin

NORM_PLACEMENTS = ("pre", "post", "sandwich", "output")


def residual(x_BTD: torch.Tensor, sublayer: Callable[[torch.Tensor], torch.Tensor], norm: nn.Module | None,
             dropout: nn.Module, normalize_before: bool, post_norm: nn.Module | None = None) -> torch.Tensor:
    """Pre-norm x + dropout(f(norm(x))), or post-norm norm(x + dropout(f(x))); with a post_norm on the
    sublayer's output x + dropout(post_norm(f(norm(x)))), norm None: none on the input."""
    if post_norm is not None:
        return x_BTD + dropout(post_norm(sublayer(x_BTD if norm is None else norm(x_BTD))))
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
                 mlp_bias: bool | None = None, qk_norm: str = "none", norm_placement: str | None = None,
                 softmax_scale: float | None = None, attn_softcap: float | None = None, mlp_chunks: int = 1):
        """bias switches the norms' biases and, unless qkv_bias / out_bias / mlp_bias say otherwise
        (None: follow bias), the projections'. head_dim, qk_norm, softmax_scale: see SelfAttention
        (q/k norms are the layer's kind of RMSNorm, plain RMSNorm next to LayerNorm); attn_softcap is its
        softcap. norm_placement: one of NORM_PLACEMENTS (None: pre if normalize_before, else post).
        mlp_chunks: slices of the tokens the feed-forward block is tiled over (bigseq.modules.feedforward)."""
        super().__init__()
        placement = norm_placement or ("pre" if normalize_before else "post")
        if placement not in NORM_PLACEMENTS:
            raise ValueError(f"norm_placement {placement!r}: use one of {NORM_PLACEMENTS}")
        if cross_attention and placement not in ("pre", "post"):
            raise ValueError(f"norm_placement {placement!r}: cross-attention layers are pre- or post-norm")
        self.norm_placement = placement
        self.normalize_before = placement != "post"
        on_input, on_output = placement != "output", placement in ("sandwich", "output")
        self.attn_norm = build_norm(norm, dim, norm_eps, bias) if on_input else None
        self.attn = SelfAttention(dim, num_heads, num_kv_heads=num_kv_heads, bias=bias, rope=rope, causal=True,
                                  window=window, attention_impl=attention_impl, head_dim=head_dim,
                                  qkv_bias=qkv_bias, out_bias=out_bias, qk_norm=qk_norm, norm_eps=norm_eps,
                                  qk_norm_kind=norm if norm in RMS_NORMS else "rmsnorm",
                                  softmax_scale=softmax_scale, softcap=attn_softcap)
        self.attn_post_norm = build_norm(norm, dim, norm_eps, bias) if on_output else None
        self.cross_attn_norm = build_norm(norm, dim, norm_eps, bias) if cross_attention else None
        self.cross_attn = (CrossAttention(dim, num_heads, encoder_dim=encoder_dim, num_kv_heads=num_kv_heads,
                                          bias=bias, attention_impl=attention_impl) if cross_attention else None)
        self.ffn_norm = build_norm(norm, dim, norm_eps, bias) if on_input else None
        self.ffn = build_feedforward(dim, ffn_dim, activation_fn, bias=bias if mlp_bias is None else mlp_bias,
                                     activation_dropout=activation_dropout, chunks=mlp_chunks)
        self.ffn_post_norm = build_norm(norm, dim, norm_eps, bias) if on_output else None
        self.dropout = Dropout(dropout)

    def forward(self, x_BTD: torch.Tensor, *, rope: RopeCosSin | None = None, start_pos: int = 0,
                positions: torch.Tensor | None = None, kv_cache: LayerKVCache | None = None,
                cu_seqlens: torch.Tensor | None = None, encoder_out: torch.Tensor | None = None,
                encoder_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D); encoder_out (B, S, E) and encoder_padding_mask (B, S) for cross-attention
        (while decoding, the KV cache keeps the encoder's keys/values after the first step)."""
        attend = partial(self.attn, rope=rope, start_pos=start_pos, positions=positions, kv_cache=kv_cache,
                         cu_seqlens=cu_seqlens)
        x_BTD = residual(x_BTD, attend, self.attn_norm, self.dropout, self.normalize_before, self.attn_post_norm)
        if self.cross_attn is not None:
            attend_source = partial(self.cross_attn, encoder_out_BSE=encoder_out,
                                    key_padding_mask=encoder_padding_mask,
                                    cache=kv_cache.cross_attn if kv_cache is not None else None)
            x_BTD = residual(x_BTD, attend_source, self.cross_attn_norm, self.dropout, self.normalize_before)
        elif encoder_out is not None:
            raise ValueError("encoder_out given to a decoder layer built without cross_attention")
        return residual(x_BTD, self.ffn, self.ffn_norm, self.dropout, self.normalize_before, self.ffn_post_norm)


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
