"""Cross-attention: decoder queries over the encoder output (encoder-decoder translation models).

No RoPE and no causal mask: every target position sees every unpadded source
position. While decoding, the encoder keys/values are projected once into a
``StaticKVCache`` and reused by every step. Legend: B batch, T target time,
S source time, D decoder dim, E encoder dim, H heads.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from bigseq import kernels
from bigseq.modules.attention import padding_mask_from_lengths
from bigseq.modules.kv_cache import StaticKVCache
from bigseq.modules.linear import Linear


class CrossAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, *, encoder_dim: int | None = None, num_kv_heads: int | None = None,
                 bias: bool = True, attention_impl: str = "torch"):
        super().__init__()
        self.head_dim = dim // num_heads
        self.attention_impl = attention_impl
        kv_dim = (num_kv_heads or num_heads) * self.head_dim
        self.q_proj = Linear(dim, num_heads * self.head_dim, bias=bias)
        self.k_proj = Linear(encoder_dim or dim, kv_dim, bias=bias)
        self.v_proj = Linear(encoder_dim or dim, kv_dim, bias=bias)
        self.out_proj = Linear(num_heads * self.head_dim, dim, bias=bias)

    def forward(self, x_BTD: torch.Tensor, encoder_out_BSE: torch.Tensor | None = None, *,
                key_padding_mask: torch.Tensor | None = None, encoder_lengths: torch.Tensor | None = None,
                cache: StaticKVCache | None = None) -> torch.Tensor:
        """x (B, T, D) over encoder_out (Bs, S, E) -> (B, T, D).

        Bs may divide B: then the G = B / Bs consecutive rows g*G .. g*G + G-1 all read source row g
        (the beams of one sentence), whose keys are projected, stored and read once instead of G
        times: the queries of a group attend as one row of G*T queries (no mask between queries, so
        this is the same attention). Padding: key_padding_mask (Bs, S), True at padding, or
        encoder_lengths (Bs,) of right-padded rows. With a filled cache, encoder_out and the padding
        may be left out (the cache has them).
        """
        B, T, _ = x_BTD.shape
        q = self.q_proj(x_BTD).view(B, T, -1, self.head_dim)
        if cache is not None and cache.filled:
            k, v, key_padding_mask = cache.keys_BSHD, cache.values_BSHD, cache.key_padding_mask_BS
        else:
            k, v, key_padding_mask = self._encoder_keys_values(encoder_out_BSE, key_padding_mask, encoder_lengths)
            if cache is not None:
                cache.store(k, v, key_padding_mask)
        sources = k.shape[0]
        if B != sources:
            if B % sources:
                raise ValueError(f"cross-attention: {B} query rows over {sources} encoder rows; the encoder rows "
                                 f"must divide the query rows (each source's rows consecutive)")
            q = q.reshape(sources, B // sources * T, *q.shape[2:])  # a view: rows of one source are adjacent
        options = {} if key_padding_mask is None else {"key_padding_mask": key_padding_mask}
        out_BTHD = kernels.attention(q, k, v, causal=False, impl=self.attention_impl, **options)
        return self.out_proj(out_BTHD.reshape(B, T, -1))

    def _encoder_keys_values(self, encoder_out_BSE, key_padding_mask, encoder_lengths):
        if encoder_out_BSE is None:
            raise ValueError("cross-attention needs encoder_out (or a filled StaticKVCache)")
        if key_padding_mask is not None and encoder_lengths is not None:
            raise ValueError("pass key_padding_mask or encoder_lengths, not both")
        B, S, _ = encoder_out_BSE.shape
        if encoder_lengths is not None:
            key_padding_mask = padding_mask_from_lengths(encoder_lengths, S)
        k = self.k_proj(encoder_out_BSE).view(B, S, -1, self.head_dim)
        v = self.v_proj(encoder_out_BSE).view(B, S, -1, self.head_dim)
        return k, v, key_padding_mask
