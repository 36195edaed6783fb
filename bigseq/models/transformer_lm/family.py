"""transformer_lm as a ModelFamily: how the rest of bigseq builds, splits, sizes and converts it."""

from __future__ import annotations

from bigseq.models.family import ModelDims, ModelFamily, register_family
from bigseq.models.transformer_lm import hf
from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.model import TransformerLanguageModel
from bigseq.modules.feedforward import GATED_ACTIVATIONS


def dims(cfg: TransformerLMConfig) -> ModelDims:
    return ModelDims(layers=cfg.decoder_layers, dim=cfg.decoder_embed_dim, ffn_dim=cfg.decoder_ffn_embed_dim,
                     heads=cfg.decoder_attention_heads, kv_heads=cfg.kv_heads, vocab_size=cfg.vocab_size or 0,
                     gated_ffn=cfg.activation_fn in GATED_ACTIVATIONS, head_dim=cfg.head_dim)


def attention_flops_per_token(cfg: TransformerLMConfig, seq_len: int) -> float:
    """Causal attention's 12 * L * D * T (scores and weighted sum, forward and backward; PaLM), with D the
    width of all heads together and T cut to the sliding window on the layers that have one."""
    width = cfg.decoder_attention_heads * cfg.head_dim
    keys = sum(min(seq_len, cfg.layer_window(i) or seq_len) for i in range(cfg.decoder_layers))
    return 12.0 * width * keys


TRANSFORMER_LM = register_family(ModelFamily(
    name="transformer_lm", model_cls=TransformerLanguageModel, config_cls=TransformerLMConfig,
    build=lambda cfg, task, seed: TransformerLanguageModel.build(cfg, task, seed=seed),
    pipeline_layers=TransformerLanguageModel.pipeline_layers, hf_adapter=hf, dims=dims,
    attention_flops_per_token=attention_flops_per_token))
