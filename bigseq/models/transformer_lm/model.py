"""TransformerLanguageModel: embedding -> N decoder layers -> final norm -> output projection.

The four parts are separate submodules built from the config alone
(``TransformerLMEmbedding(cfg)``, ``build_decoder_layer(cfg, i)``,
``build_final_norm(cfg)`` in parts.py, the tied or untied output matrix), so a
pipeline split reuses them unchanged. RoPE's cos/sin are computed once per
forward for each distinct RoPE among the layers (Gemma 3's sliding layers have
their own theta) and handed to each layer as its own; logits may be soft-capped
(Gemma 2), wherever they are made (``output_layer``, hence generation). Parameter names (``embed.tokens.weight``,
``layers.3.attn.q_proj.weight``, ``final_norm.weight``,
``output_projection.weight``) are what the init and the HF key map key on.
Legend: B batch, T time, D model dim, V vocabulary.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from bigseq.errors import BigseqError
from bigseq.models.base import BaseModel
from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.parts import (
    TransformerLMEmbedding,
    build_decoder_layer,
    build_final_norm,
    init_rules,
    layer_rope_configs,
    output_logits,
)
from bigseq.modules.init import construct_without_default_init, init_params_by_name
from bigseq.modules.kv_cache import KVCache
from bigseq.modules.rotary import RotaryEmbedding


def check_vocab_size(cfg: TransformerLMConfig, task) -> None:
    """A set vocab_size (a pretrained model's) may exceed the task's: padded rows no token id reaches."""
    if cfg.vocab_size is not None and cfg.vocab_size < task.vocab_size:
        raise BigseqError(f"--vocab-size {cfg.vocab_size} is smaller than the task's vocabulary of "
                          f"{task.vocab_size} tokens; drop --vocab-size (it is taken from the task)")


class TransformerLanguageModel(BaseModel):
    def __init__(self, cfg: TransformerLMConfig, pad_idx: int | None = None):
        super().__init__()
        if cfg.vocab_size is None:
            raise BigseqError("transformer_lm: vocab_size is not set; build the model through the task "
                              "(task.build_model) or pass --vocab-size")
        self.cfg = cfg
        self.pad_idx = pad_idx
        self.embed = TransformerLMEmbedding(cfg)
        self.layers = nn.ModuleList(build_decoder_layer(cfg, i) for i in range(cfg.decoder_layers))
        # no tensors: cos/sin are computed per forward, once per distinct RoPE
        self.layer_ropes = layer_rope_configs(cfg)
        self.rotaries = {rope: RotaryEmbedding(cfg.head_dim, rope) for rope in self.layer_ropes if rope is not None}
        self.final_norm = build_final_norm(cfg)
        self.output_projection = (None if cfg.share_decoder_input_output_embed
                                  else nn.Linear(cfg.decoder_embed_dim, cfg.vocab_size, bias=False))

    @classmethod
    def build(cls, cfg: TransformerLMConfig, task, seed: int = 1) -> "TransformerLanguageModel":
        check_vocab_size(cfg, task)
        model = construct_without_default_init(
            lambda: cls(dataclasses.replace(cfg, vocab_size=cfg.vocab_size or task.vocab_size), pad_idx=task.pad_idx))
        model.reset_parameters(seed)  # every parameter, from (seed, name)
        return model

    def reset_parameters(self, seed: int) -> None:
        """Re-initialize every parameter from (seed, its name) only."""
        init_params_by_name(self, seed, init_rules(self.cfg))

    @classmethod
    def pipeline_layers(cls, cfg: TransformerLMConfig, task) -> list:
        """This model as an ordered list of PipelineLayer specs (pipeline parallelism)."""
        from bigseq.models.transformer_lm.pipeline import pipeline_layers
        check_vocab_size(cfg, task)
        return pipeline_layers(dataclasses.replace(cfg, vocab_size=cfg.vocab_size or task.vocab_size))

    # forward ----------------------------------------------------------------
    def forward(self, src_tokens: torch.Tensor, *, positions: torch.Tensor | None = None,
                cu_seqlens: torch.Tensor | None = None, kv_cache: KVCache | None = None,
                start_pos: int = 0) -> torch.Tensor:
        """src_tokens (B, T) at positions start_pos.. (or per token: positions (B, T)) -> logits (B, T, V)."""
        return self.output_layer(self.forward_hidden(src_tokens, positions=positions, cu_seqlens=cu_seqlens,
                                                     kv_cache=kv_cache, start_pos=start_pos))

    def forward_hidden(self, src_tokens: torch.Tensor, *, positions: torch.Tensor | None = None,
                       cu_seqlens: torch.Tensor | None = None, kv_cache: KVCache | None = None,
                       start_pos: int = 0) -> torch.Tensor:
        """src_tokens (B, T) -> hidden states after the final norm (B, T, D).

        positions (B, T) place each token (position embeddings and RoPE); start_pos is where the
        tokens go in the KV cache, and their positions when positions is None. cu_seqlens (int32)
        cuts the flattened B * T tokens into documents that attend only within themselves.
        """
        if positions is not None and positions.shape != src_tokens.shape:
            raise ValueError(f"positions: expected the shape of src_tokens {tuple(src_tokens.shape)}, "
                             f"got {tuple(positions.shape)}")
        x_BTD = self.embed(src_tokens, start_pos, positions)
        tables = {rope: rotary.cos_sin(src_tokens.shape[1], start_pos=start_pos, positions=positions,
                                       device=x_BTD.device) for rope, rotary in self.rotaries.items()}
        ropes = [tables.get(rope) for rope in self.layer_ropes]  # each layer's own
        recompute = self.cfg.checkpoint_activations and self.training and kv_cache is None and torch.is_grad_enabled()
        if recompute:
            step = max(1, self.cfg.checkpoint_interval)
            for lo in range(0, len(self.layers), step):
                x_BTD = checkpoint(self._run_layers, x_BTD, lo, lo + step, ropes, start_pos, cu_seqlens,
                                   use_reentrant=False)
            return self.final_norm(x_BTD)
        for i, layer in enumerate(self.layers):
            x_BTD = layer(x_BTD, rope=ropes[i], start_pos=start_pos, cu_seqlens=cu_seqlens,
                          kv_cache=kv_cache.layer(i) if kv_cache else None)
        return self.final_norm(x_BTD)

    def _run_layers(self, x_BTD: torch.Tensor, lo: int, hi: int, ropes, start_pos: int,
                    cu_seqlens: torch.Tensor | None = None) -> torch.Tensor:
        """Layers lo..hi-1: one recomputed segment of activation checkpointing."""
        for i in range(lo, min(hi, len(self.layers))):
            x_BTD = self.layers[i](x_BTD, rope=ropes[i], start_pos=start_pos, cu_seqlens=cu_seqlens)
        return x_BTD

    @property
    def output_weight(self) -> torch.Tensor:
        """(V, D): the token embedding when tied, else the output projection."""
        if self.output_projection is None:
            return self.embed.tokens.weight
        return self.output_projection.weight

    @property
    def output_logit_softcap(self) -> float | None:
        """The cap of tanh(z / cap) * cap on the logits (None: raw logits); a fused LM-head loss must
        apply it or refuse the model."""
        return self.cfg.final_logit_softcap

    def output_layer(self, hidden_BTD: torch.Tensor) -> torch.Tensor:
        return output_logits(hidden_BTD, self.output_weight, self.cfg.final_logit_softcap)

    # decoding ---------------------------------------------------------------
    def make_kv_cache(self, batch_size: int, max_len: int, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> KVCache:
        ref = self.embed.tokens.weight
        return KVCache(len(self.layers), batch_size, max_len, self.cfg.kv_heads, self.cfg.head_dim,
                       dtype=dtype or ref.dtype, device=device or ref.device)

    @property
    def kv_recompute_position(self) -> int | None:
        """The decode step that must re-run the whole prefix (SequenceGenerator): with longrope, the first
        position past the pretraining length, where every cached key switches to the long factors."""
        if self.cfg.position_kind == "rope" and self.cfg.rope_scaling == "longrope":
            return self.cfg.rope_original_max_positions
        return None

    @property
    def max_positions(self) -> int | None:
        """Longest sequence the model can embed (None: no hard limit)."""
        return self.cfg.max_target_positions if self.cfg.position_kind == "learned" else None
