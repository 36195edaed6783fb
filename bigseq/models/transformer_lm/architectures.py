"""Named transformer_lm architectures: each is a function returning a fresh config.

Shapes of the real models: GPT-2 (small 124M ... xl 1.5B) and Llama-2 (7B, 70B
with 8 key/value heads); llama_1b is TinyLlama-1.1B's shape. The vocabulary
comes from the task.
"""

from __future__ import annotations

from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.registry import register_architecture


@register_architecture("transformer_lm", "transformer_lm")
def transformer_lm() -> TransformerLMConfig:
    """fairseq's transformer_lm: post-norm, sinusoidal positions, ReLU, 6 x 512."""
    return TransformerLMConfig()


def _gpt2(layers: int, dim: int, heads: int, max_positions: int = 1024) -> TransformerLMConfig:
    return TransformerLMConfig(
        decoder_layers=layers, decoder_embed_dim=dim, decoder_ffn_embed_dim=4 * dim,
        decoder_attention_heads=heads, activation_fn="gelu_new", positions="learned", decoder_learned_pos=True,
        norm="layernorm", norm_eps=1e-5, bias=True, decoder_normalize_before=True, no_scale_embedding=True,
        share_decoder_input_output_embed=True, dropout=0.1, max_target_positions=max_positions)


@register_architecture("transformer_lm", "gpt2_tiny")
def gpt2_tiny() -> TransformerLMConfig:
    return _gpt2(2, 64, 4, max_positions=256)


@register_architecture("transformer_lm", "gpt2_small")
def gpt2_small() -> TransformerLMConfig:
    return _gpt2(12, 768, 12)


@register_architecture("transformer_lm", "gpt2_medium")
def gpt2_medium() -> TransformerLMConfig:
    return _gpt2(24, 1024, 16)


@register_architecture("transformer_lm", "gpt2_large")
def gpt2_large() -> TransformerLMConfig:
    return _gpt2(36, 1280, 20)


@register_architecture("transformer_lm", "gpt2_xl")
def gpt2_xl() -> TransformerLMConfig:
    return _gpt2(48, 1600, 25)


def _llama(layers: int, dim: int, heads: int, ffn: int, *, kv_heads: int | None = None, tied: bool = False,
           max_positions: int = 4096, norm_eps: float = 1e-5) -> TransformerLMConfig:
    return TransformerLMConfig(
        decoder_layers=layers, decoder_embed_dim=dim, decoder_ffn_embed_dim=ffn, decoder_attention_heads=heads,
        decoder_kv_heads=kv_heads, activation_fn="swiglu", positions="rope", rope_theta=10000.0, norm="rmsnorm",
        norm_eps=norm_eps, bias=False, decoder_normalize_before=True, no_scale_embedding=True,
        share_decoder_input_output_embed=tied, dropout=0.0, max_target_positions=max_positions)


@register_architecture("transformer_lm", "llama_tiny")
def llama_tiny() -> TransformerLMConfig:
    return _llama(2, 64, 4, 176, kv_heads=2, max_positions=512)


@register_architecture("transformer_lm", "llama_125m")
def llama_125m() -> TransformerLMConfig:
    return _llama(12, 768, 12, 2048, tied=True, max_positions=2048)


@register_architecture("transformer_lm", "llama_1b")
def llama_1b() -> TransformerLMConfig:
    return _llama(22, 2048, 32, 5632, kv_heads=4, max_positions=2048)


@register_architecture("transformer_lm", "llama_7b")
def llama_7b() -> TransformerLMConfig:
    return _llama(32, 4096, 32, 11008)


@register_architecture("transformer_lm", "llama_70b")
def llama_70b() -> TransformerLMConfig:
    return _llama(80, 8192, 64, 28672, kv_heads=8)
