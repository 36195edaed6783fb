"""A tiny real encoder-decoder with the ``transformer`` family's generation API, for the generation tests.

Built from bigseq's own encoder/decoder layers and KV cache; positions skip
padding (fairseq's make_positions), so a left-padded source encodes the same as
the unpadded one. Ids: <s>=0 <pad>=1 </s>=2 <unk>=3, then words.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from bigseq.modules.kv_cache import KVCache
from bigseq.modules.transformer_layer import TransformerDecoderLayer, TransformerEncoderLayer

PAD, EOS, UNK = 1, 2, 3


@dataclass
class EncoderOut:
    out: torch.Tensor
    padding_mask: torch.Tensor

    def select(self, index: torch.Tensor) -> "EncoderOut":
        return EncoderOut(self.out[index], self.padding_mask[index])


class TinySeq2Seq(nn.Module):
    def __init__(self, vocab: int = 12, dim: int = 16, heads: int = 2, max_positions=(64, 64), seed: int = 0,
                 sharpness: float = 1.0):
        super().__init__()
        torch.manual_seed(seed)
        self.max_positions = max_positions
        self.heads, self.head_dim = heads, dim // heads
        self.src_embed, self.tgt_embed = nn.Embedding(vocab, dim), nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max(max_positions) + 2, dim)
        self.encoder = TransformerEncoderLayer(dim=dim, num_heads=heads, ffn_dim=2 * dim)
        self.decoder = TransformerDecoderLayer(dim=dim, num_heads=heads, ffn_dim=2 * dim, cross_attention=True,
                                               normalize_before=False)
        self.out = nn.Linear(dim, vocab, bias=False)
        with torch.no_grad():
            self.out.weight.mul_(sharpness)
        self.eval()

    def encode(self, src_tokens, src_lengths) -> EncoderOut:
        mask = src_tokens.eq(PAD)
        positions = torch.cumsum(~mask, 1) * ~mask
        x = self.src_embed(src_tokens) + self.pos(positions)
        return EncoderOut(self.encoder(x, padding_mask=mask), mask)

    def decode(self, prev_output_tokens, encoder_out: EncoderOut, *, kv_cache=None, start_pos: int = 0):
        T = prev_output_tokens.shape[1]
        positions = torch.arange(start_pos, start_pos + T, device=prev_output_tokens.device) + 1
        x = self.tgt_embed(prev_output_tokens) + self.pos(positions)
        x = self.decoder(x, start_pos=start_pos, kv_cache=kv_cache.layer(0) if kv_cache is not None else None,
                         encoder_out=encoder_out.out, encoder_padding_mask=encoder_out.padding_mask)
        return self.out(x)

    def forward(self, src_tokens, src_lengths, prev_output_tokens):
        return self.decode(prev_output_tokens, self.encode(src_tokens, src_lengths))

    def make_kv_cache(self, batch_size, max_len, dtype=None, device=None) -> KVCache:
        return KVCache(1, batch_size, max_len, self.heads, self.head_dim, dtype=dtype or torch.float32, device=device)

    def reorder_kv_cache(self, cache: KVCache, index: torch.Tensor) -> None:
        for layer in cache.layers:
            layer.keys_BSHD, layer.values_BSHD = layer.keys_BSHD[index], layer.values_BSHD[index]
            cross = layer.cross_attn
            if cross.filled:
                cross.store(cross.keys_BSHD[index], cross.values_BSHD[index], cross.key_padding_mask_BS[index])


def left_pad(sentences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources as fairseq collates them: left-padded, each ending with eos."""
    width = max(len(s) for s in sentences)
    tokens = torch.full((len(sentences), width), PAD, dtype=torch.long)
    for i, s in enumerate(sentences):
        tokens[i, width - len(s):] = torch.tensor(s)
    return tokens, torch.tensor([len(s) for s in sentences])
