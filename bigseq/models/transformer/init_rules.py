"""fairseq's initialization of the ``transformer``, as rules over bigseq's parameter names.

Token and learned position embeddings and an untied output projection: N(0, dim^-0.5), padding
rows zero (``zero_padding_rows``); attention q/k/v: xavier_uniform with gain 1/sqrt(2) where
queries, keys and values have one width (fairseq's qkv_same_dim), gain 1 otherwise (cross-attention
over an encoder of another width); out_proj: xavier_uniform, zero bias; q/k/v biases and the
feed-forward's Linear layers keep PyTorch's default, U(+-1/sqrt(fan_in)) for weight and bias (fairseq
builds them with a plain nn.Linear); LayerNorms: ones and zeros. Every value is a function of
(seed, name) (bigseq.modules.init); the distributions are fairseq's, the random draws are not.
"""

from __future__ import annotations

import math

import torch.nn as nn

from bigseq.models.transformer.config import TransformerConfig
from bigseq.modules.init import Initializer, InitRule, normal, ones, zero_row, zeros


def uniform(bound: float) -> Initializer:
    """U(-bound, bound), drawn on the CPU in fp32 like bigseq's own initializers."""
    def init(numel, gen):
        return zeros()(numel, gen).uniform_(-bound, bound, generator=gen)
    return init


def xavier(fan_in: int, fan_out: int, gain: float = 1.0) -> Initializer:
    return uniform(gain * math.sqrt(6.0 / (fan_in + fan_out)))


def _layer_rules(prefix: str, attn: str, dim: int, kv_dim: int, ffn_dim: int) -> list[InitRule]:
    """Rules of one attention block (attn: 'attn' or 'cross_attn') and, for 'attn', the layer's FFN."""
    gain = 1 / math.sqrt(2) if kv_dim == dim else 1.0
    rules = [
        (f"{prefix}.{attn}.q_proj.weight", xavier(dim, dim, gain)),
        (f"{prefix}.{attn}.[kv]_proj.weight", xavier(kv_dim, dim, gain)),
        (f"{prefix}.{attn}.q_proj.bias", uniform(dim ** -0.5)),
        (f"{prefix}.{attn}.[kv]_proj.bias", uniform(kv_dim ** -0.5)),
        (f"{prefix}.{attn}.out_proj.weight", xavier(dim, dim)),
    ]
    if attn == "attn":
        rules += [(f"{prefix}.ffn.up_proj.*", uniform(dim ** -0.5)),
                  (f"{prefix}.ffn.down_proj.*", uniform(ffn_dim ** -0.5))]
    return rules


def init_rules(cfg: TransformerConfig) -> list[InitRule]:
    enc, dec = cfg.encoder.embed_dim, cfg.decoder_dim
    return [
        ("*norm*.weight", ones()),
        ("*norm*.bias", zeros()),
        ("*.out_proj.bias", zeros()),
        ("encoder.embed_*.weight", normal(enc ** -0.5)),
        ("decoder.embed_*.weight", normal(dec ** -0.5)),
        ("decoder.output_projection.weight", normal(dec ** -0.5)),
        *_layer_rules("encoder.layers.*", "attn", enc, enc, cfg.encoder.ffn_embed_dim),
        *_layer_rules("decoder.layers.*", "attn", dec, dec, cfg.decoder_ffn_dim),
        *_layer_rules("decoder.layers.*", "cross_attn", dec, enc, cfg.decoder_ffn_dim),
    ]


def zero_padding_rows(model: nn.Module, pad_idx: int) -> None:
    """fairseq zeroes row pad_idx of every token and learned position table (nn.Embedding's padding_idx)."""
    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            zero_row(module.weight, module.padding_idx)
