"""The parts of TransformerLanguageModel, each built from the config alone.

``TransformerLMEmbedding(cfg)``, ``build_decoder_layer(cfg, index)`` and
``build_final_norm(cfg)`` are shared by the plain model and its pipeline split,
so both hold the same modules under the same parameter names; ``rope_config(cfg, i)``
is layer i's RoPE (Gemma 3's sliding layers have a theta of their own) and
``output_logits`` the head's arithmetic (Gemma 2's final soft-capping included).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from bigseq.kernels.cpu_bf16 import linear
from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.modules.dropout import Dropout
from bigseq.modules.embeddings import LearnedPositionalEmbedding, SinusoidalPositionalEmbedding
from bigseq.modules.init import InitRule, normal, ones, zeros
from bigseq.modules.norms import UNIT_OFFSET_NORMS, build_norm
from bigseq.modules.rotary import RopeConfig, longrope_attention_factor
from bigseq.modules.transformer_layer import TransformerDecoderLayer


class TransformerLMEmbedding(nn.Module):
    """tokens (B, T) -> dropout(norm(scale * tok_emb + pos_emb)) (B, T, D)."""

    def __init__(self, cfg: TransformerLMConfig):
        super().__init__()
        d = cfg.decoder_embed_dim
        self.tokens = nn.Embedding(cfg.vocab_size, d)
        self.scale = 1.0 if cfg.no_scale_embedding else math.sqrt(d)
        # Gemma's sqrt(d) rounded to the weight dtype (through fp32, as its buffer is); fairseq's is exact
        self.scale_in_weight_dtype = cfg.embed_scale_in_weight_dtype
        kind = cfg.position_kind
        self.position_offset = cfg.position_offset  # fairseq's: its first position is pad_idx + 1
        self.positions = (LearnedPositionalEmbedding(cfg.max_target_positions + cfg.position_offset, d)
                          if kind == "learned"
                          else SinusoidalPositionalEmbedding(d) if kind == "sinusoidal" else None)
        self.layernorm = build_norm(cfg.norm, d, cfg.norm_eps, cfg.bias) if cfg.layernorm_embedding else None
        self.dropout = Dropout(cfg.dropout)

    def forward(self, tokens_BT: torch.Tensor, start_pos: int = 0,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """positions (B, T): each token's position; None: start_pos .. start_pos + T - 1 on every row."""
        x_BTD = self.tokens(tokens_BT)
        if self.scale_in_weight_dtype:
            x_BTD = x_BTD * torch.tensor(self.scale, dtype=torch.float32, device=x_BTD.device).to(x_BTD.dtype)
        elif self.scale != 1.0:
            x_BTD = x_BTD * self.scale
        T = tokens_BT.shape[1]
        if self.position_offset:
            start_pos += self.position_offset
            positions = None if positions is None else positions + self.position_offset
        if isinstance(self.positions, LearnedPositionalEmbedding):
            x_BTD = x_BTD + self.positions(T, start_pos, positions=positions)
        elif self.positions is not None:
            pos_emb = self.positions(T, start_pos, device=x_BTD.device, positions=positions)
            x_BTD = x_BTD + pos_emb.to(x_BTD.dtype)
        if self.layernorm is not None:
            x_BTD = self.layernorm(x_BTD)
        return self.dropout(x_BTD)


def rope_config(cfg: TransformerLMConfig, index: int | None = None) -> RopeConfig | None:
    """Decoder layer ``index``'s RoPE (None: the non-sliding layers'); None without RoPE."""
    if cfg.position_kind != "rope":
        return None
    if index is not None and cfg.rope_local_theta is not None and cfg.layer_window(index) is not None:
        return RopeConfig(theta=cfg.rope_local_theta)
    if cfg.rope_scaling == "none":
        return RopeConfig(theta=cfg.rope_theta, partial_factor=cfg.rope_partial_factor)
    if cfg.rope_scaling == "longrope":
        attention_factor = cfg.rope_attention_factor
        if attention_factor is None:
            attention_factor = longrope_attention_factor(cfg.max_target_positions, cfg.rope_original_max_positions)
        return RopeConfig(theta=cfg.rope_theta, scaling="longrope", partial_factor=cfg.rope_partial_factor,
                          original_max_positions=cfg.rope_original_max_positions,
                          short_factor=tuple(cfg.rope_short_factor), long_factor=tuple(cfg.rope_long_factor),
                          attention_factor=attention_factor)
    return RopeConfig(theta=cfg.rope_theta, scaling=cfg.rope_scaling, factor=cfg.rope_scaling_factor,
                      low_freq_factor=cfg.rope_low_freq_factor, high_freq_factor=cfg.rope_high_freq_factor,
                      original_max_positions=cfg.rope_original_max_positions, partial_factor=cfg.rope_partial_factor)


def layer_rope_configs(cfg: TransformerLMConfig) -> list[RopeConfig | None]:
    return [rope_config(cfg, i) for i in range(cfg.decoder_layers)]


def build_decoder_layer(cfg: TransformerLMConfig, index: int,
                        layer_cls: type = TransformerDecoderLayer) -> nn.Module:
    """Decoder layer ``index`` (its sliding window may differ from the other layers');
    layer_cls: TransformerDecoderLayer or a subclass (the pipeline's form)."""
    return layer_cls(
        dim=cfg.decoder_embed_dim, num_heads=cfg.decoder_attention_heads, num_kv_heads=cfg.kv_heads,
        ffn_dim=cfg.decoder_ffn_embed_dim, activation_fn=cfg.activation_fn, norm=cfg.norm, norm_eps=cfg.norm_eps,
        bias=cfg.bias, normalize_before=cfg.decoder_normalize_before, rope=rope_config(cfg, index),
        dropout=cfg.dropout, activation_dropout=cfg.activation_dropout, attention_impl=cfg.attention_impl,
        head_dim=cfg.decoder_head_dim, qkv_bias=cfg.uses_qkv_bias, out_bias=cfg.uses_out_bias,
        mlp_bias=cfg.uses_mlp_bias, qk_norm=cfg.qk_norm, window=cfg.layer_window(index),
        norm_placement=cfg.norm_placement, attn_softcap=cfg.attn_logit_softcap,
        softmax_scale=None if cfg.query_pre_attn_scalar is None else cfg.query_pre_attn_scalar ** -0.5,
        mlp_chunks=cfg.mlp_chunks)


def build_final_norm(cfg: TransformerLMConfig) -> nn.Module:
    if cfg.has_final_norm:
        return build_norm(cfg.norm, cfg.decoder_embed_dim, cfg.norm_eps, cfg.bias)
    return nn.Identity()


def output_logits(hidden_BTD: torch.Tensor, weight_VD: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """(B, T, D) -> (B, T, V) logits, soft-capped to tanh(z / cap) * cap when ``softcap`` is set."""
    logits_BTV = linear(hidden_BTD, weight_VD)
    if softcap is None:
        return logits_BTV
    return torch.tanh(logits_BTV / softcap) * softcap


def init_rules(cfg: TransformerLMConfig) -> list[InitRule]:
    """GPT-2/Llama init: N(0, std) weights, residual outputs scaled, zero biases, unit norms (zero weights
    for Gemma's unit-offset norms, which scale by 1 + weight)."""
    residual_std = cfg.init_std / math.sqrt(2 * cfg.decoder_layers) if cfg.scale_residual_init else cfg.init_std
    return [
        ("*norm.weight", zeros() if cfg.norm in UNIT_OFFSET_NORMS else ones()),
        ("*.bias", zeros()),
        ("*.attn.out_proj.weight", normal(residual_std)),
        ("*.ffn.down_proj.weight", normal(residual_std)),
        ("*", normal(cfg.init_std)),
    ]
