"""fairseq's named ``transformer`` architectures (fairseq/models/transformer/transformer_legacy.py).

Each function returns a fresh config with fairseq's values; flags given on the command line
override them, and a decoder size the architecture leaves unset follows the encoder's, as in
fairseq (``transformer``, ``transformer_tiny``). ``transformer_wmt_en_de_big`` and
``transformer_wmt_en_de_big_t2t`` set --attention-dropout 0.1, which bigseq cannot train with:
building them asks for --attention-dropout 0 (see config_checks.py).
"""

from __future__ import annotations

from bigseq.models.transformer.config import DecoderConfig, EncoderConfig, TransformerConfig
from bigseq.registry import register_architecture


@register_architecture("transformer", "transformer")
def transformer() -> TransformerConfig:
    """fairseq's base_architecture: 6 + 6 post-norm layers of 512 (FFN 2048, 8 heads), dropout 0.1."""
    return TransformerConfig()


@register_architecture("transformer", "transformer_tiny")
def transformer_tiny() -> TransformerConfig:
    return TransformerConfig(encoder=EncoderConfig(embed_dim=64, ffn_embed_dim=64, layers=2, attention_heads=2),
                             decoder=DecoderConfig(layers=2, attention_heads=2))


@register_architecture("transformer", "transformer_iwslt_de_en")
def transformer_iwslt_de_en() -> TransformerConfig:
    return TransformerConfig(encoder=EncoderConfig(embed_dim=512, ffn_embed_dim=1024, layers=6, attention_heads=4),
                             decoder=DecoderConfig(embed_dim=512, ffn_embed_dim=1024, layers=6, attention_heads=4))


@register_architecture("transformer", "transformer_wmt_en_de")
def transformer_wmt_en_de() -> TransformerConfig:
    return TransformerConfig()


def _big(*, dropout: float = 0.3, attention_dropout: float = 0.0, activation_dropout: float = 0.0,
         normalize_before: bool = False) -> TransformerConfig:
    """Vaswani et al.'s big model: 6 + 6 layers of 1024 (FFN 4096, 16 heads)."""
    return TransformerConfig(
        encoder=EncoderConfig(embed_dim=1024, ffn_embed_dim=4096, attention_heads=16,
                              normalize_before=normalize_before),
        decoder=DecoderConfig(embed_dim=1024, ffn_embed_dim=4096, attention_heads=16,
                              normalize_before=normalize_before),
        dropout=dropout, attention_dropout=attention_dropout, activation_dropout=activation_dropout)


@register_architecture("transformer", "transformer_vaswani_wmt_en_de_big")
def transformer_vaswani_wmt_en_de_big() -> TransformerConfig:
    return _big()


@register_architecture("transformer", "transformer_vaswani_wmt_en_fr_big")
def transformer_vaswani_wmt_en_fr_big() -> TransformerConfig:
    return _big(dropout=0.1)


@register_architecture("transformer", "transformer_wmt_en_de_big")
def transformer_wmt_en_de_big() -> TransformerConfig:
    return _big(attention_dropout=0.1)


@register_architecture("transformer", "transformer_wmt_en_de_big_t2t")
def transformer_wmt_en_de_big_t2t() -> TransformerConfig:
    """tensor2tensor's settings: pre-norm encoder and decoder (each with a final LayerNorm)."""
    return _big(attention_dropout=0.1, activation_dropout=0.1, normalize_before=True)
