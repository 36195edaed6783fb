"""Self-attention options: sliding window, packed documents, key padding, decoding with a window, and with
Gemma's soft-capping and softmax scale."""

import pytest
import torch

from bigseq.kernels import attention
from bigseq.modules.attention import SelfAttention, padding_mask_from_lengths
from bigseq.modules.kv_cache import KVCache
from bigseq.modules.rotary import RopeConfig


def masked_softmax_attention(q, k, v, allowed_QK):
    """Hand-built attention: (B, Sq, H, D) over (B, Sk, H, D) where allowed (Sq, Sk) is True."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
    weights = scores.masked_fill(~allowed_QK, float("-inf")).softmax(-1)
    return torch.einsum("bhqk,bkhd->bqhd", weights, v)


@pytest.mark.parametrize("sq,sk,window", [(9, 9, 3), (9, 9, 1), (4, 11, 5), (1, 7, 2)])
def test_window_equals_a_hand_built_masked_softmax(sq, sk, window):
    q, k, v = (torch.randn(2, s, 3, 8, dtype=torch.float64) for s in (sq, sk, sk))
    query_pos = torch.arange(sq)[:, None] + sk - sq  # the causal mask is aligned to the end of the keys
    key_pos = torch.arange(sk)[None, :]
    allowed = (key_pos <= query_pos) & (key_pos > query_pos - window)
    out = attention(q, k, v, window=window, impl="torch")
    torch.testing.assert_close(out, masked_softmax_attention(q, k, v, allowed))


def test_window_at_least_the_length_is_full_causal_attention():
    q, k, v = (torch.randn(2, 8, 4, 16) for _ in range(3))
    full = attention(q, k, v, impl="torch")
    for window in (8, 100):
        torch.testing.assert_close(attention(q, k, v, window=window, impl="torch"), full)
    assert not torch.allclose(attention(q, k, v, window=7, impl="torch"), full)


def test_key_padding_mask_equals_a_hand_built_masked_softmax():
    q, k, v = (torch.randn(2, 5, 2, 8, dtype=torch.float64) for _ in range(3))
    pad = padding_mask_from_lengths(torch.tensor([5, 3]), 5)
    assert pad.tolist()[1] == [False, False, False, True, True]
    out = attention(q, k, v, causal=False, key_padding_mask=pad, impl="torch")
    torch.testing.assert_close(out, masked_softmax_attention(q, k, v, ~pad[:, None, None, :]))


@pytest.mark.parametrize("causal,window", [(True, None), (True, 2), (False, None)])
def test_packed_documents_equal_each_document_run_alone(causal, window):
    attn = SelfAttention(32, 4, num_kv_heads=2, rope=RopeConfig(), causal=causal, window=window).eval()
    x = torch.randn(2, 6, 32)
    lengths = [[4, 2], [1, 3, 2]]  # two rows of packed documents
    cu_seqlens = torch.tensor([0, 4, 6, 7, 10, 12], dtype=torch.int32)  # over the flattened 2 * 6 tokens
    positions = torch.tensor([[0, 1, 2, 3, 0, 1], [0, 0, 1, 2, 0, 1]])  # each document restarts at 0
    with torch.no_grad():
        packed = attn(x, positions=positions, cu_seqlens=cu_seqlens)
        for row, docs in enumerate(lengths):
            start = 0
            for n in docs:
                alone = attn(x[row:row + 1, start:start + n])
                torch.testing.assert_close(packed[row, start:start + n], alone[0])
                start += n


def test_encoder_attention_ignores_padded_keys():
    attn = SelfAttention(16, 2, causal=False).eval()
    x = torch.randn(2, 5, 16)
    pad = padding_mask_from_lengths(torch.tensor([5, 3]), 5)
    changed = x.clone()
    changed[1, 3:] = torch.randn(2, 16)
    with torch.no_grad():
        a, b = attn(x, key_padding_mask=pad), attn(changed, key_padding_mask=pad)
        alone = attn(x[1:, :3])
    torch.testing.assert_close(a[:, :3], b[:, :3], rtol=0, atol=0)
    torch.testing.assert_close(a[1:, :3], alone)


def test_decoding_with_a_window_equals_the_full_windowed_forward():
    attn = SelfAttention(32, 4, num_kv_heads=2, rope=RopeConfig(), window=3).eval()
    x = torch.randn(2, 9, 32)
    cache = KVCache(1, 2, 12, 2, 8).layer(0)
    with torch.no_grad():
        full = attn(x)
        steps = [attn(x[:, :4], kv_cache=cache, start_pos=0)]
        steps += [attn(x[:, t:t + 1], kv_cache=cache, start_pos=t) for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, 1), full)


def test_decoding_with_softcap_and_scale_equals_the_full_forward():
    torch.manual_seed(2)
    attn = SelfAttention(32, 4, num_kv_heads=2, rope=RopeConfig(), window=3, softcap=1.0, softmax_scale=0.9).eval()
    plain = SelfAttention(32, 4, num_kv_heads=2, rope=RopeConfig(), window=3).eval()
    plain.load_state_dict(attn.state_dict())
    x = torch.randn(2, 9, 32) * 3
    cache = KVCache(1, 2, 12, 2, 8).layer(0)
    with torch.no_grad():
        full = attn(x)
        steps = [attn(x[:, :4], kv_cache=cache, start_pos=0)]
        steps += [attn(x[:, t:t + 1], kv_cache=cache, start_pos=t) for t in range(4, 9)]
        assert (full - plain(x)).abs().max() > 0.01  # the cap and the scale matter
    torch.testing.assert_close(torch.cat(steps, 1), full)


def test_a_kv_cache_refuses_packing_and_padding():
    attn = SelfAttention(16, 2)
    cache = KVCache(1, 1, 4, 2, 8).layer(0)
    with pytest.raises(ValueError, match="KV cache takes neither"):
        attn(torch.randn(1, 2, 16), kv_cache=cache, cu_seqlens=torch.tensor([0, 2], dtype=torch.int32))
