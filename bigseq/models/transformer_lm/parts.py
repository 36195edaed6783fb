"""The parts of TransformerLanguageModel, each built from the config alone.

``TransformerLMEmbedding(cfg)``, ``build_decoder_layer(cfg, index)`` and
``build_final_norm(cfg)`` are shared by the plain model and its pipeline split,
so both hold the same modules under the same parameter names.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.modules.dropout import Dropout
from bigseq.modules.embeddings import LearnedPositionalEmbedding, SinusoidalPositionalEmbedding
from bigseq.modules.init import InitRule, normal, ones, zeros
from bigseq.modules.norms import build_norm
from bigseq.modules.rotary import RopeConfig, longrope_attention_factor
from bigseq.modules.transformer_layer import TransformerDecoderLayer


class TransformerLMEmbedding(nn.Module):
    """tokens (B, T) -> dropout(norm(scale * tok_emb + pos_emb)) (B, T, D)."""

    def __init__(self, cfg: TransformerLMConfig):
        super().__init__()
        d = cfg.decoder_embed_dim
        self.tokens = nn.Embedding(cfg.vocab_size, d)
        self.scale = 1.0 if cfg.no_scale_embedding else math.sqrt(d)
        kind = cfg.position_kind
        self.positions = (LearnedPositionalEmbedding(cfg.max_target_positions, d) if kind == "learned"
                          else SinusoidalPositionalEmbedding(d) if kind == "sinusoidal" else None)
        self.layernorm = build_norm(cfg.norm, d, cfg.norm_eps, cfg.bias) if cfg.layernorm_embedding else None
        self.dropout = Dropout(cfg.dropout)

    def forward(self, tokens_BT: torch.Tensor, start_pos: int = 0,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """positions (B, T): each token's position; None: start_pos .. start_pos + T - 1 on every row."""
        x_BTD = self.tokens(tokens_BT)
        if self.scale != 1.0:
            x_BTD = x_BTD * self.scale
        T = tokens_BT.shape[1]
        if isinstance(self.positions, LearnedPositionalEmbedding):
            x_BTD = x_BTD + self.positions(T, start_pos, positions=positions)
        elif self.positions is not None:
            pos_emb = self.positions(T, start_pos, device=x_BTD.device, positions=positions)
            x_BTD = x_BTD + pos_emb.to(x_BTD.dtype)
        if self.layernorm is not None:
            x_BTD = self.layernorm(x_BTD)
        return self.dropout(x_BTD)


def rope_config(cfg: TransformerLMConfig) -> RopeConfig | None:
    if cfg.position_kind != "rope":
        return None
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


def build_decoder_layer(cfg: TransformerLMConfig, index: int,
                        layer_cls: type = TransformerDecoderLayer) -> nn.Module:
    """Decoder layer ``index`` (its sliding window may differ from the other layers');
    layer_cls: TransformerDecoderLayer or a subclass (the pipeline's form)."""
    return layer_cls(
        dim=cfg.decoder_embed_dim, num_heads=cfg.decoder_attention_heads, num_kv_heads=cfg.kv_heads,
        ffn_dim=cfg.decoder_ffn_embed_dim, activation_fn=cfg.activation_fn, norm=cfg.norm, norm_eps=cfg.norm_eps,
        bias=cfg.bias, normalize_before=cfg.decoder_normalize_before, rope=rope_config(cfg), dropout=cfg.dropout,
        activation_dropout=cfg.activation_dropout, attention_impl=cfg.attention_impl,
        head_dim=cfg.decoder_head_dim, qkv_bias=cfg.uses_qkv_bias, out_bias=cfg.uses_out_bias,
        mlp_bias=cfg.uses_mlp_bias, qk_norm=cfg.qk_norm, window=cfg.layer_window(index))


def build_final_norm(cfg: TransformerLMConfig) -> nn.Module:
    if cfg.has_final_norm:
        return build_norm(cfg.norm, cfg.decoder_embed_dim, cfg.norm_eps, cfg.bias)
    return nn.Identity()


def init_rules(cfg: TransformerLMConfig) -> list[InitRule]:
    """GPT-2/Llama init: N(0, std) weights, residual outputs scaled, zero biases, unit norms."""
    residual_std = cfg.init_std / math.sqrt(2 * cfg.decoder_layers) if cfg.scale_residual_init else cfg.init_std
    return [
        ("*norm.weight", ones()),
        ("*.bias", zeros()),
        ("*.attn.out_proj.weight", normal(residual_std)),
        ("*.ffn.down_proj.weight", normal(residual_std)),
        ("*", normal(cfg.init_std)),
    ]
