"""One query against head-major keys (a cross-attention cache while decoding) takes two batched matrix
products instead of SDPA: the same values, masked keys skipped, and other layouts still go to SDPA."""

import torch
import torch.nn.functional as F

from bigseq import kernels
from bigseq.modules.kv_cache import StaticKVCache


def _head_major(t):
    return t.transpose(1, 2).contiguous().transpose(1, 2)


def test_single_query_over_head_major_keys_matches_sdpa_with_padding():
    gen = torch.Generator().manual_seed(0)
    B, S, H, D = 6, 11, 4, 16
    q = torch.randn(B, 1, H, D, generator=gen)
    k, v = (_head_major(torch.randn(B, S, H, D, generator=gen)) for _ in range(2))
    pad = torch.zeros(B, S, dtype=torch.bool)
    pad[1, 7:] = True
    pad[4, 2:] = True
    out = kernels.attention(q, k, v, causal=False, key_padding_mask=pad, impl="torch")
    want = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          attn_mask=~pad[:, None, None, :]).transpose(1, 2)
    assert out.shape == (B, 1, H, D)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=1e-5)
    unpadded = kernels.attention(q, k, v, causal=False, softmax_scale=0.3, impl="torch")
    torch.testing.assert_close(unpadded, F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=0.3).transpose(1, 2), atol=1e-6, rtol=1e-5)


def test_static_cache_keeps_keys_head_major_through_a_reorder():
    cache = StaticKVCache()
    k, v = torch.randn(4, 5, 2, 8), torch.randn(4, 5, 2, 8)
    cache.store(k, v, torch.zeros(4, 5, dtype=torch.bool))
    assert torch.equal(cache.keys_BSHD, k) and cache.keys_BSHD.transpose(1, 2).is_contiguous()
    cache.reorder(torch.tensor([3, 1]))
    assert torch.equal(cache.keys_BSHD, k[[3, 1]]) and torch.equal(cache.values_BSHD, v[[3, 1]])
    assert cache.keys_BSHD.transpose(1, 2).is_contiguous() and cache.key_padding_mask_BS.shape == (2, 5)


def test_a_few_queries_per_row_over_head_major_keys_match_sdpa():
    gen = torch.Generator().manual_seed(1)
    B, Q, S, H, D = 3, 5, 9, 2, 8
    q = torch.randn(B, Q, H, D, generator=gen)
    k, v = (_head_major(torch.randn(B, S, H, D, generator=gen)) for _ in range(2))
    pad = torch.zeros(B, S, dtype=torch.bool)
    pad[2, 4:] = True
    out = kernels.attention(q, k, v, causal=False, key_padding_mask=pad, impl="torch")
    want = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          attn_mask=~pad[:, None, None, :]).transpose(1, 2)
    assert out.shape == (B, Q, H, D)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=1e-5)
