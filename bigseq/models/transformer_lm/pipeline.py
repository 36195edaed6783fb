"""transformer_lm as a sequence of pipeline layers over the plain model's own modules.

embed -> layers.0 .. layers.N-1 -> final_norm -> output projection, with the
plain model's parameter names as prefixes, so a stage initialises (and later
consolidates to) exactly the weights of ``TransformerLanguageModel``. Tied
embeddings are one module (key 'embed') used by the first and the last layer.

Between stages travel the hidden states, or (hidden states, positions (B, T)[,
cu_seqlens]) when the first stage is given (tokens, positions[, cu_seqlens]): the
document layout of --document-mask, integer tensors that DeepSpeed's pipeline sends
with their shapes (dynamic_shape) and without gradients; the last decoder layer drops
them. Only these cross a stage boundary, so each decoder layer
computes RoPE's cos/sin itself (from the positions, or from T) with its own RoPE
(``rope_config(cfg, i)``: Gemma 3's sliding layers have their own theta). The head
stage soft-caps the logits as the plain model's output_layer does (``output_logits``).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from bigseq.models.pipeline_layers import PipelineLayer
from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.parts import (
    TransformerLMEmbedding,
    build_decoder_layer,
    build_final_norm,
    init_rules,
    output_logits,
)
from bigseq.modules.transformer_layer import TransformerDecoderLayer

TIE_KEY = "embed"


class PipelineEmbedding(TransformerLMEmbedding):
    """tokens (B, T) -> hidden; (tokens, positions[, cu_seqlens]) -> (hidden, positions[, cu_seqlens])."""

    def forward(self, inputs):
        if isinstance(inputs, tuple):
            tokens_BT, positions_BT, *layout = inputs
            return super().forward(tokens_BT, positions=positions_BT), positions_BT, *layout
        return super().forward(inputs)


class PipelineDecoderLayer(TransformerDecoderLayer):
    """hidden -> hidden; (hidden, positions[, cu_seqlens]) -> the same tuple, or hidden from the last layer."""

    last = False

    def forward(self, inputs):
        if isinstance(inputs, tuple):
            x_BTD, positions_BT, *layout = inputs
            x_BTD = super().forward(x_BTD, positions=positions_BT, cu_seqlens=layout[0] if layout else None)
            return x_BTD if self.last else (x_BTD, positions_BT, *layout)
        return super().forward(inputs)


def _pipeline_decoder_layer(cfg: TransformerLMConfig, index: int) -> PipelineDecoderLayer:
    layer = build_decoder_layer(cfg, index, PipelineDecoderLayer)
    layer.last = index == cfg.decoder_layers - 1
    return layer


def tied_output_logits(embedding: TransformerLMEmbedding, hidden_BTD: torch.Tensor,
                       softcap: float | None = None) -> torch.Tensor:
    """(B, T, D) -> (B, T, V) with the input token embedding as the output matrix."""
    return output_logits(hidden_BTD, embedding.tokens.weight, softcap)


class OutputProjection(nn.Linear):
    """The untied head: hidden -> logits, soft-capped when ``softcap`` is set."""

    def __init__(self, dim: int, vocab_size: int, softcap: float | None = None):
        super().__init__(dim, vocab_size, bias=False)
        self.softcap = softcap

    def forward(self, hidden_BTD: torch.Tensor) -> torch.Tensor:
        return output_logits(hidden_BTD, self.weight, self.softcap)


def _output_projection(cfg: TransformerLMConfig) -> nn.Linear:
    return OutputProjection(cfg.decoder_embed_dim, cfg.vocab_size, cfg.final_logit_softcap)


def pipeline_layers(cfg: TransformerLMConfig) -> list[PipelineLayer]:
    """The model (vocab_size set) as PipelineLayers; their composition is the plain forward."""
    rules = init_rules(cfg)
    tied = cfg.share_decoder_input_output_embed
    # cls names the public class (what --pipeline-partition-method type:<Class> matches); the built
    # modules are its pipeline forms, which take and pass on the positions
    embed = partial(PipelineEmbedding, cfg)
    layers = [PipelineLayer(TransformerLMEmbedding, embed, "embed.", rules, tie_key=TIE_KEY if tied else None,
                            tied_weight="tokens.weight" if tied else None)]
    n = cfg.decoder_layers
    layers += [PipelineLayer(TransformerDecoderLayer, partial(_pipeline_decoder_layer, cfg, i),
                             f"layers.{i}.", rules) for i in range(n)]
    if cfg.has_final_norm:
        norm_cls = type(build_final_norm(cfg))
        layers.append(PipelineLayer(norm_cls, partial(build_final_norm, cfg), "final_norm.", rules))
    if tied:
        layers.append(PipelineLayer(TransformerLMEmbedding, embed, "embed.", rules, tie_key=TIE_KEY,
                                    tied_forward=partial(tied_output_logits, softcap=cfg.final_logit_softcap),
                                    tied_weight="tokens.weight"))
    else:
        layers.append(PipelineLayer(nn.Linear, partial(_output_projection, cfg), "output_projection.", rules))
    return layers
