"""transformer (encoder-decoder) as a ModelFamily: how the rest of bigseq builds and sizes it.

No pipeline split yet (the trainer refuses --pipeline-parallel-size > 1 naming the family). HF
interop: FSMT and M2M100 (models/transformer/hf/).
"""

from __future__ import annotations

from bigseq.models.family import ModelDims, ModelFamily, register_family
from bigseq.models.transformer import hf
from bigseq.models.transformer.config import TransformerConfig
from bigseq.models.transformer.model import TransformerModel


def dims(cfg: TransformerConfig) -> ModelDims:
    """The wider side's sizes (ZeRO-3 buckets key on the largest matrices); the vocabulary is the task's."""
    enc = cfg.encoder
    return ModelDims(layers=enc.layers + cfg.decoder.layers, dim=max(enc.embed_dim, cfg.decoder_dim),
                     ffn_dim=max(enc.ffn_embed_dim, cfg.decoder_ffn_dim),
                     heads=max(enc.attention_heads, cfg.decoder.attention_heads),
                     kv_heads=max(enc.attention_heads, cfg.decoder.attention_heads), vocab_size=0, gated_ffn=False)


def attention_flops_per_token(cfg: TransformerConfig, seq_len: int) -> float:
    """12 * D * keys per layer (scores and weighted sum, forward and backward; PaLM) for the encoder's
    self-attention and the decoder's self- and cross-attention, taking source and target lengths
    both as seq_len (FLOPs per target token, with 6N for the parameters)."""
    keys = cfg.encoder.layers * cfg.encoder.embed_dim + 2 * cfg.decoder.layers * cfg.decoder_dim
    return 12.0 * keys * seq_len


TRANSFORMER = register_family(ModelFamily(
    name="transformer", model_cls=TransformerModel, config_cls=TransformerConfig,
    build=lambda cfg, task, seed: TransformerModel.build(cfg, task, seed=seed),
    pipeline_layers=None, hf_adapter=hf, dims=dims, attention_flops_per_token=attention_flops_per_token))
