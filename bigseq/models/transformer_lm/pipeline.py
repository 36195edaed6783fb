"""transformer_lm as a sequence of pipeline layers over the plain model's own modules.

embed -> layers.0 .. layers.N-1 -> final_norm -> output projection, with the
plain model's parameter names as prefixes, so a stage initialises (and later
consolidates to) exactly the weights of ``TransformerLanguageModel``. Tied
embeddings are one module (key 'embed') used by the first and the last layer.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from bigseq.models.pipeline_layers import PipelineLayer
from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.model import TransformerLMEmbedding, build_decoder_layer, build_final_norm, init_rules
from bigseq.modules.transformer_layer import TransformerDecoderLayer

TIE_KEY = "embed"


def tied_output_logits(embedding: TransformerLMEmbedding, hidden_BTD: torch.Tensor) -> torch.Tensor:
    """(B, T, D) -> (B, T, V) with the input token embedding as the output matrix."""
    return F.linear(hidden_BTD, embedding.tokens.weight)


def _output_projection(cfg: TransformerLMConfig) -> nn.Linear:
    return nn.Linear(cfg.decoder_embed_dim, cfg.vocab_size, bias=False)


def pipeline_layers(cfg: TransformerLMConfig) -> list[PipelineLayer]:
    """The model (vocab_size set) as PipelineLayers; their composition is the plain forward."""
    rules = init_rules(cfg)
    tied = cfg.share_decoder_input_output_embed
    embed = partial(TransformerLMEmbedding, cfg)
    layers = [PipelineLayer(TransformerLMEmbedding, embed, "embed.", rules, tie_key=TIE_KEY if tied else None,
                            tied_weight="tokens.weight" if tied else None)]
    layers += [PipelineLayer(TransformerDecoderLayer, partial(build_decoder_layer, cfg), f"layers.{i}.", rules)
               for i in range(cfg.decoder_layers)]
    if cfg.has_final_norm:
        norm_cls = type(build_final_norm(cfg))
        layers.append(PipelineLayer(norm_cls, partial(build_final_norm, cfg), "final_norm.", rules))
    if tied:
        layers.append(PipelineLayer(TransformerLMEmbedding, embed, "embed.", rules, tie_key=TIE_KEY,
                                    tied_forward=tied_output_logits, tied_weight="tokens.weight"))
    else:
        layers.append(PipelineLayer(nn.Linear, partial(_output_projection, cfg), "output_projection.", rules))
    return layers
