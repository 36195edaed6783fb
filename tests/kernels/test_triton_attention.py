"""Triton FlashAttention (interpreter on CPU) against the torch reference: output and dq/dk/dv.

The interpreter uses 16x16 blocks, so these small shapes span several blocks and
their lengths are deliberately not multiples of 16.
"""

import pytest
import torch
from kernel_checks import assert_matches, fp64_leaves, same_dtype_leaves

from bigseq.kernels import attention, reference

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16


def _check(q, k, v, *, causal, scale=None, cu_seqlens=None, dtype):
    """Forward + backward of impl='triton' vs fp64 and same-dtype torch references."""
    ours = same_dtype_leaves(q, k, v)
    out = attention(*ours, causal=causal, softmax_scale=scale, cu_seqlens=cu_seqlens, impl="triton")
    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, ours, dout)
    results = {}
    for label, leaves in (("fp64", fp64_leaves(q, k, v)), ("torch", same_dtype_leaves(q, k, v))):
        ref = reference.attention(*leaves, causal=causal, softmax_scale=scale, cu_seqlens=cu_seqlens)
        results[label] = (ref, *torch.autograd.grad(ref, leaves, dout.to(ref.dtype)))
    for i, name in enumerate(("out", "dq", "dk", "dv")):
        mine = out if i == 0 else grads[i - 1]
        assert_matches(name, mine, results["fp64"][i], results["torch"][i], dtype)


def _qkv(shape_q, shape_kv, dtype):
    return (torch.randn(shape_q, dtype=dtype), torch.randn(shape_kv, dtype=dtype), torch.randn(shape_kv, dtype=dtype))


# (B, Sq, Sk, Hq, Hkv, D, causal, dtype): MHA/GQA/MQA, head dims 32/64/128, Sq != Sk, one-token decode
PADDED = [
    (2, 37, 37, 4, 2, 32, True, F32),
    (1, 50, 50, 2, 2, 64, False, F32),
    (1, 19, 45, 4, 1, 64, True, F32),
    (1, 21, 40, 2, 2, 128, False, F32),
    (1, 1, 30, 4, 2, 64, True, F32),
    (1, 17, 17, 2, 1, 256, True, F32),
    (1, 33, 33, 2, 1, 128, True, F16),
    (2, 24, 24, 2, 2, 32, False, F16),
    (1, 20, 20, 4, 2, 64, True, BF16),
]


@pytest.mark.usefixtures("poison")
@pytest.mark.parametrize("B,Sq,Sk,Hq,Hkv,D,causal,dtype", PADDED)
def test_padded_matches_reference(B, Sq, Sk, Hq, Hkv, D, causal, dtype):
    torch.manual_seed(hash((B, Sq, Sk, Hq, Hkv, D, causal)) % 2**31)
    q, k, v = _qkv((B, Sq, Hq, D), (B, Sk, Hkv, D), dtype)
    _check(q, k, v, causal=causal, dtype=dtype)


# (document lengths, Hq, Hkv, D, causal, dtype): several documents, an empty one, one of length 1
PACKED = [
    ([5, 0, 23, 17, 1], 4, 2, 64, True, F32),
    ([16, 16, 3], 2, 2, 128, True, F32),
    ([31, 9], 2, 1, 32, False, F32),
    ([12, 29], 4, 2, 64, True, F16),
]


@pytest.mark.usefixtures("poison")
@pytest.mark.parametrize("lengths,Hq,Hkv,D,causal,dtype", PACKED)
def test_packed_matches_reference(lengths, Hq, Hkv, D, causal, dtype):
    torch.manual_seed(sum(lengths) + D)
    cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32)
    T = sum(lengths)
    q, k, v = _qkv((T, Hq, D), (T, Hkv, D), dtype)
    _check(q, k, v, causal=causal, scale=0.3, cu_seqlens=cu, dtype=dtype)


def test_packed_documents_do_not_attend_across_boundaries():
    torch.manual_seed(1)
    cu = torch.tensor([0, 20, 37], dtype=torch.int32)
    q, k, v = _qkv((37, 2, 32), (37, 2, 32), F32)
    out = attention(q, k, v, causal=False, cu_seqlens=cu, impl="triton")
    k2, v2 = k.clone(), v.clone()
    k2[20:] += 1.0
    v2[20:] -= 1.0
    out2 = attention(q, k2, v2, causal=False, cu_seqlens=cu, impl="triton")
    assert torch.equal(out[:20], out2[:20])
    assert not torch.allclose(out[20:], out2[20:])


def test_backward_is_deterministic():
    torch.manual_seed(2)
    q, k, v = (t.requires_grad_() for t in _qkv((1, 40, 4, 32), (1, 40, 1, 32), F32))
    dout = torch.randn(1, 40, 4, 32)
    runs = [torch.autograd.grad(attention(q, k, v, impl="triton"), (q, k, v), dout) for _ in range(2)]
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_noncontiguous_inputs_match_contiguous():
    torch.manual_seed(3)
    qkv = torch.randn(1, 18, 3, 2, 32)  # fused projection output, sliced per tensor
    q, k, v = qkv.unbind(2)
    assert not q.is_contiguous()
    out = attention(q, k, v, impl="triton")
    ref = attention(q.contiguous(), k.contiguous(), v.contiguous(), impl="triton")
    assert torch.equal(out, ref)


@pytest.mark.usefixtures("poison")
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_random_shapes_match_reference(seed):
    """Shapes drawn at random (fixed seeds, so a failure reproduces); packed with several documents."""
    gen = torch.Generator().manual_seed(seed)

    def draw(lo, hi):
        return int(torch.randint(lo, hi + 1, (), generator=gen))

    torch.manual_seed(seed)
    D = (32, 64, 128)[draw(0, 2)]
    Hkv, group, causal = draw(1, 2), (1, 2, 4)[draw(0, 2)], bool(draw(0, 1))
    if seed % 2:
        lengths = [draw(1, 40) for _ in range(draw(2, 4))]
        cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32)
        q, k, v = _qkv((sum(lengths), Hkv * group, D), (sum(lengths), Hkv, D), F32)
        _check(q, k, v, causal=causal, cu_seqlens=cu, dtype=F32)
    else:
        B, Sk = draw(1, 2), draw(2, 60)
        Sq = draw(1, Sk) if causal else draw(1, 60)
        q, k, v = _qkv((B, Sq, Hkv * group, D), (B, Sk, Hkv, D), F32)
        _check(q, k, v, causal=causal, dtype=F32)
