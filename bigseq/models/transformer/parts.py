"""The encoder and decoder stacks of TransformerModel, fairseq's numerics.

Embedding: scale * token embedding (+ positions) (-> LayerNorm) -> dropout. Positions follow
fairseq's ``make_positions``: the k-th non-pad token of a row gets position pad_idx + 1 + k,
so left padding does not shift them, and pads get a zero position vector (row pad_idx of
fairseq's tables); the learned table has max_positions + pad_idx + 1 rows. The encoder then
zeroes the rows of padded tokens and masks them as keys; the decoder is causal and attends to
the unpadded encoder positions. Post-norm layers (fairseq's default) or pre-norm layers with
a final LayerNorm. Legend: B batch, S source time, T target time, D dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from bigseq.errors import BigseqError
from bigseq.models.transformer.config import TransformerConfig
from bigseq.modules.dropout import Dropout
from bigseq.modules.embeddings import SinusoidalPositionalEmbedding
from bigseq.modules.kv_cache import KVCache
from bigseq.modules.transformer_layer import TransformerDecoderLayer, TransformerEncoderLayer


def make_positions(tokens_BT: torch.Tensor, pad_idx: int) -> torch.Tensor:
    """fairseq's make_positions: pad_idx + 1 + k for the k-th non-pad token of a row, pad_idx at pads."""
    real = tokens_BT.ne(pad_idx).long()
    return torch.cumsum(real, dim=1) * real + pad_idx


class _Stack(nn.Module):
    """What the encoder and the decoder share: the embedding of tokens and positions."""

    def __init__(self, cfg: TransformerConfig, side: str, embed_tokens: nn.Embedding, dim: int, pad_idx: int):
        super().__init__()
        self.pad_idx = pad_idx
        self.max_positions = cfg.max_source_positions if side == "encoder" else cfg.max_target_positions
        self.side = side
        self.embed_tokens = embed_tokens
        self.embed_scale = 1.0 if cfg.no_scale_embedding else math.sqrt(dim)
        kind = cfg.position_kind(side)
        # fairseq's learned table is an nn.Embedding of max_positions + pad_idx + 1 rows with padding_idx
        self.embed_positions = (nn.Embedding(self.max_positions + pad_idx + 1, dim, padding_idx=pad_idx)
                                if kind == "learned" else SinusoidalPositionalEmbedding(dim)
                                if kind == "sinusoidal" else None)
        self.layernorm_embedding = nn.LayerNorm(dim) if cfg.layernorm_embedding else None
        self.dropout = Dropout(cfg.dropout)
        self.checkpoint_activations = cfg.checkpoint_activations

    def embed(self, tokens_BT: torch.Tensor, positions_BT: torch.Tensor) -> torch.Tensor:
        """positions (B, T) or (1, T) for every row: pad_idx + 1 + k for real tokens, pad_idx for pads
        (zero vector)."""
        if isinstance(self.embed_positions, nn.Embedding) and positions_BT.shape[1] > self.max_positions:
            raise BigseqError(f"a {self.side} input of {positions_BT.shape[1]} tokens is longer than "
                              f"--max-{'source' if self.side == 'encoder' else 'target'}-positions "
                              f"{self.max_positions}; use shorter inputs or raise the flag")
        x_BTD = self.embed_scale * self.embed_tokens(tokens_BT)
        if isinstance(self.embed_positions, nn.Embedding):
            x_BTD = x_BTD + self.embed_positions(positions_BT)
        elif self.embed_positions is not None:
            table = self.embed_positions(positions_BT.shape[1], positions=positions_BT)
            x_BTD = x_BTD + (table * positions_BT.ne(self.pad_idx)[..., None]).to(x_BTD.dtype)
        if self.layernorm_embedding is not None:
            x_BTD = self.layernorm_embedding(x_BTD)
        return self.dropout(x_BTD)

    def recompute(self, kv_cache) -> bool:
        return self.checkpoint_activations and self.training and kv_cache is None and torch.is_grad_enabled()


class TransformerEncoder(_Stack):
    def __init__(self, cfg: TransformerConfig, embed_tokens: nn.Embedding, pad_idx: int):
        enc = cfg.encoder
        super().__init__(cfg, "encoder", embed_tokens, enc.embed_dim, pad_idx)
        self.layers = nn.ModuleList(TransformerEncoderLayer(
            dim=enc.embed_dim, num_heads=enc.attention_heads, ffn_dim=enc.ffn_embed_dim,
            activation_fn=cfg.activation_fn, normalize_before=enc.normalize_before, dropout=cfg.dropout,
            activation_dropout=cfg.activation_dropout, attention_impl=cfg.attention_impl) for _ in range(enc.layers))
        self.final_norm = nn.LayerNorm(enc.embed_dim) if enc.normalize_before else None

    def forward(self, src_tokens_BS: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (out (B, S, D), padding_mask (B, S) True at pads)."""
        padding_mask_BS = src_tokens_BS.eq(self.pad_idx)
        x_BSD = self.embed(src_tokens_BS, make_positions(src_tokens_BS, self.pad_idx))
        x_BSD = x_BSD * (~padding_mask_BS)[..., None].to(x_BSD.dtype)  # fairseq zeroes the padded rows
        for layer in self.layers:
            if self.recompute(None):
                x_BSD = checkpoint(layer, x_BSD, padding_mask=padding_mask_BS, use_reentrant=False)
            else:
                x_BSD = layer(x_BSD, padding_mask=padding_mask_BS)
        if self.final_norm is not None:
            x_BSD = self.final_norm(x_BSD)
        return x_BSD, padding_mask_BS


class TransformerDecoder(_Stack):
    def __init__(self, cfg: TransformerConfig, embed_tokens: nn.Embedding, pad_idx: int, vocab_size: int):
        dim, dec = cfg.decoder_dim, cfg.decoder
        super().__init__(cfg, "decoder", embed_tokens, dim, pad_idx)
        self.layers = nn.ModuleList(TransformerDecoderLayer(
            dim=dim, num_heads=dec.attention_heads, ffn_dim=cfg.decoder_ffn_dim, activation_fn=cfg.activation_fn,
            normalize_before=dec.normalize_before, cross_attention=True, encoder_dim=cfg.encoder.embed_dim,
            dropout=cfg.dropout, activation_dropout=cfg.activation_dropout, attention_impl=cfg.attention_impl)
            for _ in range(dec.layers))
        self.final_norm = nn.LayerNorm(dim) if dec.normalize_before else None
        self.output_projection = None if cfg.ties_output else nn.Linear(dim, vocab_size, bias=False)

    def forward(self, prev_output_tokens_BT: torch.Tensor, encoder_out_BSE: torch.Tensor,
                encoder_padding_mask_BS: torch.Tensor, kv_cache: KVCache | None = None,
                start_pos: int = 0) -> torch.Tensor:
        """-> hidden states (B, T, D) after the final norm. Without a cache, positions come from
        make_positions (right-padded targets); with one, step s is at pad_idx + 1 + s as in fairseq's
        incremental decoding."""
        if kv_cache is None:
            if start_pos:
                raise ValueError("start_pos needs a kv_cache (without one, decode the whole prefix)")
            positions_BT = make_positions(prev_output_tokens_BT, self.pad_idx)
        else:
            T = prev_output_tokens_BT.shape[1]
            steps = torch.arange(start_pos, start_pos + T, device=prev_output_tokens_BT.device)
            positions_BT = (steps + self.pad_idx + 1)[None]  # (1, T): every row at the same step, broadcast
            if start_pos + T > self.max_positions and isinstance(self.embed_positions, nn.Embedding):
                raise BigseqError(f"decoding reached {start_pos + T} tokens, beyond --max-target-positions "
                                  f"{self.max_positions}; generate fewer tokens")
        x_BTD = self.embed(prev_output_tokens_BT, positions_BT)
        for i, layer in enumerate(self.layers):
            kwargs = dict(encoder_out=encoder_out_BSE, encoder_padding_mask=encoder_padding_mask_BS)
            if self.recompute(kv_cache):
                x_BTD = checkpoint(layer, x_BTD, use_reentrant=False, **kwargs)
            else:
                x_BTD = layer(x_BTD, start_pos=start_pos, kv_cache=kv_cache.layer(i) if kv_cache else None,
                              **kwargs)
        if self.final_norm is not None:
            x_BTD = self.final_norm(x_BTD)
        return x_BTD

    @property
    def output_weight(self) -> torch.Tensor:
        """(V, D): the token embedding when tied, else the output projection."""
        return self.embed_tokens.weight if self.output_projection is None else self.output_projection.weight
