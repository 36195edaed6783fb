"""TransformerModel: fairseq's encoder-decoder ``transformer``, importable from fairseq by a key rename.

API (the translation task, the criterions, beam search and the converters code against it):

- ``forward(src_tokens, src_lengths, prev_output_tokens) -> logits (B, T, V_tgt)``: the translation
  batch's ``net_input``; src_tokens (B, S) left- or right-padded, prev_output_tokens (B, T)
  right-padded and starting with eos, as fairseq's collate makes them.
- ``forward_hidden(src_tokens, src_lengths, prev_output_tokens) -> (B, T, D)`` and ``output_weight``
  (V_tgt, D), for --fused-linear-ce; ``output_layer(hidden) -> logits``.
- ``encode(src_tokens, src_lengths) -> EncoderOut`` (out (B, S, D), padding_mask (B, S) True at pads;
  ``.select(index)`` reorders or repeats rows).
- ``decode(prev_output_tokens, encoder_out, *, kv_cache=None, start_pos=0) -> logits``: with a cache,
  prev_output_tokens holds only the new tokens, at steps start_pos..; step s sits at position
  pad_idx + 1 + s as in fairseq's incremental decoding. The first cached call stores each layer's
  encoder keys/values in the cache; later calls use those (encoder_out is then not read).
  encoder_out may have fewer rows than prev_output_tokens, dividing them: G = B / B_enc consecutive
  token rows then share one encoder row (a sentence's beams), whose keys are stored once.
- ``make_kv_cache(batch_size, max_len, dtype=None, device=None) -> KVCache``;
  ``reorder_kv_cache(cache, index, cross_attn=True)`` index_selects the rows of every self-attention
  cache and (unless cross_attn=False) of every cross-attention (encoder) cache, in place, and
  returns the cache.
- ``max_positions -> (max_source_positions, max_target_positions)``.
- ``build(cfg, task, seed)`` reads task.src_vocab_size, task.tgt_vocab_size, task.pad_idx and
  task.joined_dictionary.

Parameter names (a fairseq key maps to one of these by renaming):
  encoder.embed_tokens.weight              encoder.embed_positions.weight (learned positions only)
  encoder.layernorm_embedding.{weight,bias} (--layernorm-embedding)
  encoder.layers.{i}.attn.{q,k,v,out}_proj.{weight,bias}   encoder.layers.{i}.attn_norm.{weight,bias}
  encoder.layers.{i}.ffn.{up,down}_proj.{weight,bias}      encoder.layers.{i}.ffn_norm.{weight,bias}
  encoder.final_norm.{weight,bias} (pre-norm only)
  decoder.embed_tokens.weight, decoder.embed_positions.weight, decoder.layernorm_embedding.*
  decoder.layers.{i}.attn.*, .attn_norm.*, .cross_attn.{q,k,v,out}_proj.*, .cross_attn_norm.*,
  .ffn.{up,down}_proj.*, .ffn_norm.*      decoder.final_norm.* (pre-norm only)
  decoder.output_projection.weight (absent when tied to decoder.embed_tokens)
fairseq: self_attn -> attn, self_attn_layer_norm -> attn_norm, encoder_attn -> cross_attn,
encoder_attn_layer_norm -> cross_attn_norm, fc1/fc2 -> ffn.up_proj/ffn.down_proj,
final_layer_norm -> ffn_norm, {encoder,decoder}.layer_norm -> final_norm.
Under --share-all-embeddings encoder.embed_tokens and decoder.embed_tokens are ONE module (one
Parameter; named_parameters lists it once, as encoder.embed_tokens.weight; state_dict has both keys).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from bigseq.errors import BigseqError
from bigseq.kernels.cpu_bf16 import linear
from bigseq.models.base import BaseModel
from bigseq.models.transformer.config import TransformerConfig
from bigseq.models.transformer.init_rules import init_rules, zero_padding_rows
from bigseq.models.transformer.parts import TransformerDecoder, TransformerEncoder
from bigseq.modules.init import construct_without_default_init, init_params_by_name
from bigseq.modules.kv_cache import KVCache


@dataclasses.dataclass
class EncoderOut:
    out: torch.Tensor
    """(B, S, D) encoder output."""
    padding_mask: torch.Tensor
    """(B, S) bool, True at source pads."""

    def select(self, index: torch.Tensor) -> "EncoderOut":
        """Rows ``index`` (reordered, repeated for beams)."""
        return EncoderOut(self.out.index_select(0, index), self.padding_mask.index_select(0, index))


def check_buildable(cfg: TransformerConfig, task) -> None:
    """The checks that need the task, or that only training needs (one line each)."""
    if cfg.attention_dropout:
        raise BigseqError(f"--attention-dropout {cfg.attention_dropout} is not supported (bigseq.kernels.attention "
                          f"has no dropout); fairseq's transformer_wmt_en_de_big(_t2t) archs default to 0.1: "
                          f"override it with --attention-dropout 0")
    if cfg.share_all_embeddings and not (task.joined_dictionary and task.src_vocab_size == task.tgt_vocab_size):
        raise BigseqError(f"--share-all-embeddings needs a joined dictionary (one vocabulary for source and "
                          f"target: preprocess with --joined-dictionary); this data has {task.src_vocab_size} "
                          f"source and {task.tgt_vocab_size} target tokens")


class TransformerModel(BaseModel):
    def __init__(self, cfg: TransformerConfig, *, src_vocab_size: int, tgt_vocab_size: int, pad_idx: int):
        super().__init__()
        self.cfg = cfg
        self.pad_idx = pad_idx
        src_embed = nn.Embedding(src_vocab_size, cfg.encoder.embed_dim, padding_idx=pad_idx)
        tgt_embed = (src_embed if cfg.share_all_embeddings
                     else nn.Embedding(tgt_vocab_size, cfg.decoder_dim, padding_idx=pad_idx))
        self.encoder = TransformerEncoder(cfg, src_embed, pad_idx)
        self.decoder = TransformerDecoder(cfg, tgt_embed, pad_idx, tgt_vocab_size)

    @classmethod
    def build(cls, cfg: TransformerConfig, task, seed: int = 1) -> "TransformerModel":
        check_buildable(cfg, task)
        model = construct_without_default_init(lambda: cls(
            cfg, src_vocab_size=task.src_vocab_size, tgt_vocab_size=task.tgt_vocab_size, pad_idx=task.pad_idx))
        model.reset_parameters(seed)
        return model

    def reset_parameters(self, seed: int) -> None:
        """Every parameter from (seed, its name) with fairseq's distributions; padding rows zero."""
        init_params_by_name(self, seed, init_rules(self.cfg))
        zero_padding_rows(self, self.pad_idx)

    # training ---------------------------------------------------------------
    def forward(self, src_tokens: torch.Tensor, src_lengths: torch.Tensor,
                prev_output_tokens: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.forward_hidden(src_tokens, src_lengths, prev_output_tokens))

    def forward_hidden(self, src_tokens: torch.Tensor, src_lengths: torch.Tensor,
                       prev_output_tokens: torch.Tensor) -> torch.Tensor:
        """-> decoder hidden states (B, T, D) after its final norm."""
        encoder_out = self.encode(src_tokens, src_lengths)
        return self.decoder(prev_output_tokens, encoder_out.out, encoder_out.padding_mask)

    @property
    def output_weight(self) -> torch.Tensor:
        return self.decoder.output_weight

    def output_layer(self, hidden_BTD: torch.Tensor) -> torch.Tensor:
        return linear(hidden_BTD, self.output_weight)

    # generation -------------------------------------------------------------
    def encode(self, src_tokens: torch.Tensor, src_lengths: torch.Tensor | None = None) -> EncoderOut:
        """src_lengths is accepted for the net_input contract; the padding comes from the tokens (fairseq)."""
        return EncoderOut(*self.encoder(src_tokens))

    def decode(self, prev_output_tokens: torch.Tensor, encoder_out: EncoderOut | None, *,
               kv_cache: KVCache | None = None, start_pos: int = 0) -> torch.Tensor:
        """encoder_out may be None once kv_cache holds the encoder keys (after the first cached call)."""
        out, mask = (None, None) if encoder_out is None else (encoder_out.out, encoder_out.padding_mask)
        hidden_BTD = self.decoder(prev_output_tokens, out, mask, kv_cache=kv_cache, start_pos=start_pos)
        return self.output_layer(hidden_BTD)

    def make_kv_cache(self, batch_size: int, max_len: int, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> KVCache:
        ref = self.output_weight
        heads = self.cfg.decoder.attention_heads
        return KVCache(self.cfg.decoder.layers, batch_size, max_len, heads, self.cfg.decoder_dim // heads,
                       dtype=dtype or ref.dtype, device=device or ref.device)

    @staticmethod
    def reorder_kv_cache(cache: KVCache, index: torch.Tensor, *, cross_attn: bool = True) -> KVCache:
        """Rows ``index`` of every cache, in place; cross_attn=False keeps the encoder keys as they are
        (beams reordered within their sentences, none dropped: fairseq skips that copy too)."""
        return cache.reorder(index, cross_attn=cross_attn)

    @property
    def max_positions(self) -> tuple[int, int]:
        return self.cfg.max_source_positions, self.cfg.max_target_positions
