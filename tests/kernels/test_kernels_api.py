"""Dispatch, input validation and the torch reference of bigseq.kernels."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from bigseq.kernels import (
    KernelUnavailableError,
    attention,
    cross_entropy,
    decode_attention,
    linear_cross_entropy,
    reference,
)


def test_import_does_not_import_triton():
    code = "import sys, bigseq.kernels; assert 'triton' not in sys.modules, 'triton imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_auto_on_cpu_is_the_torch_reference(recwarn):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 9, 4, 8), torch.randn(2, 9, 2, 8), torch.randn(2, 9, 2, 8)
    assert torch.equal(attention(q, k, v), reference.attention(q, k, v, causal=True, softmax_scale=None))
    logits, target = torch.randn(6, 11), torch.randint(0, 11, (6,))
    assert torch.equal(cross_entropy(logits, target)[0], reference.cross_entropy(logits, target)[0])
    assert not [w for w in recwarn.list if "bigseq" in str(w.message)]


def test_reference_packed_equals_per_document_padded():
    torch.manual_seed(1)
    lengths = [4, 7, 3]
    cu = torch.tensor([0, 4, 11, 14], dtype=torch.int32)
    q, k, v = torch.randn(14, 4, 8), torch.randn(14, 2, 8), torch.randn(14, 2, 8)
    out = attention(q, k, v, cu_seqlens=cu, impl="torch")
    start = 0
    for n in lengths:
        doc = [t[start:start + n].unsqueeze(0) for t in (q, k, v)]
        torch.testing.assert_close(out[start:start + n], attention(*doc, impl="torch")[0])
        start += n


def test_reference_smoothing_conventions():
    torch.manual_seed(2)
    V, eps = 12, 0.1
    logits, target = torch.randn(5, V), torch.randint(0, V, (5,))
    lprobs = F.log_softmax(logits, -1)
    fairseq_q = torch.full((5, V), eps / (V - 1)).scatter_(1, target[:, None], 1 - eps)
    loss, _ = cross_entropy(logits, target, label_smoothing=eps, smoothing="fairseq", impl="torch")
    torch.testing.assert_close(loss, -(fairseq_q * lprobs).sum())
    loss, _ = cross_entropy(logits, target, label_smoothing=eps, smoothing="uniform", impl="torch")
    torch.testing.assert_close(loss, F.cross_entropy(logits, target, label_smoothing=eps, reduction="sum"))
    loss, nll = cross_entropy(logits, target, z_loss=0.01, reduction="mean", impl="torch")
    torch.testing.assert_close(loss - nll, 0.01 * torch.logsumexp(logits, -1).pow(2).mean())


def test_reference_decode_attention_masks_past_each_length():
    torch.manual_seed(3)
    q, kc, vc = torch.randn(2, 4, 16), torch.randn(2, 10, 2, 16), torch.randn(2, 10, 2, 16)
    lens = torch.tensor([3, 10], dtype=torch.int32)
    out = decode_attention(q, kc, vc, lens)
    expected = attention(q[:1, None], kc[:1, :3], vc[:1, :3], causal=False, impl="torch")[0, 0]
    torch.testing.assert_close(out[0], expected)
    full = torch.full((2,), 10, dtype=torch.int32)
    torch.testing.assert_close(decode_attention(q, kc, vc), decode_attention(q, kc, vc, full))  # None: all S
    torch.testing.assert_close(decode_attention(q, kc, vc, softcap=2.0), decode_attention(q, kc, vc, full, softcap=2.0))


def softcapped(q, k, v, allowed, scale, cap):
    """Hand-built soft-capped attention (Gemma 2's eager): q (B, Sq, H, D), k/v with H heads too."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    scores = (torch.tanh(scores / cap) * cap).masked_fill(~allowed, float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v)


@pytest.mark.parametrize("window", [None, 3])
def test_reference_softcap_caps_the_scaled_scores_before_the_mask(window):
    torch.manual_seed(4)
    q, k, v = torch.randn(2, 6, 4, 8, dtype=torch.float64) * 3, torch.randn(2, 9, 2, 8, dtype=torch.float64) * 3, \
        torch.randn(2, 9, 2, 8, dtype=torch.float64)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[1, :2] = True
    query_pos, key_pos = torch.arange(6)[:, None] + 3, torch.arange(9)[None, :]
    allowed = (key_pos <= query_pos) & (key_pos > query_pos - (window or 99))
    allowed = allowed[None, None] & ~pad[:, None, None, :]
    out = attention(q, k, v, softmax_scale=0.3, softcap=2.0, window=window, key_padding_mask=pad, impl="auto")
    kk, vv = (t.repeat_interleave(2, dim=2) for t in (k, v))
    torch.testing.assert_close(out, softcapped(q, kk, vv, allowed, 0.3, 2.0))
    uncapped = attention(q, k, v, softmax_scale=0.3, window=window, key_padding_mask=pad, impl="torch")
    assert (out - uncapped).abs().max() > 0.1  # the cap matters at these score sizes


def test_reference_softcap_packed_and_decode_equal_the_padded_form():
    torch.manual_seed(5)
    cu = torch.tensor([0, 4, 11], dtype=torch.int32)
    q, k, v = torch.randn(11, 4, 8) * 3, torch.randn(11, 2, 8) * 3, torch.randn(11, 2, 8)
    out = attention(q, k, v, cu_seqlens=cu, softcap=1.5, window=3, impl="torch")
    for start, end in ((0, 4), (4, 11)):
        doc = [t[start:end].unsqueeze(0) for t in (q, k, v)]
        torch.testing.assert_close(out[start:end], attention(*doc, softcap=1.5, window=3, impl="torch")[0])
    # decode: the last query of a sequence against its cache, with a scale of its own
    kc, vc = k[None, 4:11], v[None, 4:11]
    lens = torch.tensor([7], dtype=torch.int32)
    step = decode_attention(q[None, 10], kc, vc, lens, softmax_scale=0.2, softcap=1.5)
    full = attention(q[None, 4:11], kc, vc, softmax_scale=0.2, softcap=1.5, impl="torch")[0, -1]
    torch.testing.assert_close(step[0], full)
    assert (step[0] - decode_attention(q[None, 10], kc, vc, lens, softmax_scale=0.2)[0]).abs().max() > 0.01
    with pytest.raises(ValueError, match=r"^softcap: impl='cuda' does not support it; use impl='torch'"):
        decode_attention(q[None, 10], kc, vc, lens, softcap=1.5, impl="cuda")


def _qkv(*shapes, dtype=torch.float32):
    return [torch.randn(s, dtype=dtype) for s in shapes]


CU = torch.tensor([0, 3, 8], dtype=torch.int32)
BAD_ATTENTION = [
    ("q", dict(q=torch.randn(2, 4, 8))),  # 3-D without cu_seqlens
    ("q", dict(q=torch.randn(1, 4, 2, 8).long())),
    ("k", dict(k=torch.randn(1, 4, 2, 8, dtype=torch.float16))),
    ("k", dict(k=torch.randn(1, 4, 2, 8, device="meta"))),
    ("k", dict(k=torch.randn(1, 4, 3, 8), v=torch.randn(1, 4, 3, 8))),  # 2 query heads, 3 kv heads
    ("k", dict(k=torch.randn(1, 4, 2, 4), v=torch.randn(1, 4, 2, 4))),  # head dim mismatch
    ("v", dict(v=torch.randn(1, 5, 2, 8))),
    ("q", dict(q=torch.randn(1, 6, 2, 8))),  # causal, more queries than keys
    ("softmax_scale", dict(softmax_scale=-1.0)),
    ("impl", dict(impl="fast")),
    ("cu_seqlens", dict(q=torch.randn(8, 2, 8), k=torch.randn(8, 2, 8), v=torch.randn(8, 2, 8),
                        cu_seqlens=CU.long())),
    ("cu_seqlens", dict(q=torch.randn(8, 2, 8), k=torch.randn(8, 2, 8), v=torch.randn(8, 2, 8),
                        cu_seqlens=torch.tensor([0, 5, 3, 8], dtype=torch.int32))),
    ("cu_seqlens", dict(q=torch.randn(9, 2, 8), k=torch.randn(9, 2, 8), v=torch.randn(9, 2, 8), cu_seqlens=CU)),
    ("max_seqlen", dict(q=torch.randn(8, 2, 8), k=torch.randn(8, 2, 8), v=torch.randn(8, 2, 8), cu_seqlens=CU,
                        max_seqlen=4)),
    ("window", dict(window=0)),
    ("window", dict(window=2, causal=False)),
    ("key_padding_mask", dict(key_padding_mask=torch.zeros(1, 3, dtype=torch.bool))),
    ("key_padding_mask", dict(key_padding_mask=torch.zeros(1, 4))),
    ("softcap", dict(softcap=0.0)),
    ("softcap", dict(softcap=True)),
]


@pytest.mark.parametrize("impl", ["torch", "triton"])
@pytest.mark.parametrize("arg,override", BAD_ATTENTION)
def test_bad_attention_input_names_the_argument(arg, override, impl):
    args = dict(q=torch.randn(1, 4, 2, 8), k=torch.randn(1, 4, 2, 8), v=torch.randn(1, 4, 2, 8), impl=impl)
    args.update(override)
    q, k, v = args.pop("q"), args.pop("k"), args.pop("v")
    with pytest.raises(ValueError, match=rf"^{arg}: "):
        attention(q, k, v, **args)


@pytest.mark.parametrize("impl", ["triton", "cuda"])
@pytest.mark.parametrize("option", [dict(window=4), dict(key_padding_mask=torch.zeros(1, 4, dtype=torch.bool)),
                                    dict(softcap=2.0)])
def test_window_key_padding_and_softcap_are_torch_only(impl, option):
    q = torch.randn(1, 4, 2, 32)
    name = next(iter(option))
    with pytest.raises(ValueError, match=rf"^{name}: impl='{impl}' does not support it; use impl='torch'"):
        attention(q, q, q, impl=impl, **option)
    torch.testing.assert_close(attention(q, q, q, impl="auto", **option), attention(q, q, q, impl="torch", **option))


def test_triton_rejects_unsupported_head_dim():
    q = torch.randn(1, 4, 2, 48)
    with pytest.raises(ValueError, match="^q: impl='triton' supports head dims"):
        attention(q, q, q, impl="triton")


BAD_LOSS = [
    ("target", dict(target=torch.tensor([0, 1, 12, 2]))),
    ("target", dict(target=torch.tensor([0, 1, -5, 2]))),
    ("target", dict(target=torch.tensor([0.0, 1.0, 2.0, 3.0]))),
    ("target", dict(target=torch.tensor([0, 1, 2]))),
    ("logits", dict(logits=torch.randint(0, 3, (4, 12)))),
    ("smoothing", dict(smoothing="label")),
    ("reduction", dict(reduction="avg")),
    ("label_smoothing", dict(label_smoothing=1.0)),
    ("z_loss", dict(z_loss=-1.0)),
]


@pytest.mark.parametrize("impl", ["torch", "triton"])
@pytest.mark.parametrize("arg,override", BAD_LOSS)
def test_bad_cross_entropy_input_names_the_argument(arg, override, impl):
    args = dict(logits=torch.randn(4, 12), target=torch.tensor([0, 1, -100, 11]), impl=impl)
    args.update(override)
    with pytest.raises(ValueError, match=rf"^{arg}: "):
        cross_entropy(args.pop("logits"), args.pop("target"), **args)


@pytest.mark.parametrize("arg,override", [
    ("weight", dict(weight=torch.randn(12, 16, dtype=torch.float16))),
    ("hidden", dict(hidden=torch.randn(4, 8))),
    ("bias", dict(bias=torch.randn(11))),
    ("target", dict(target=torch.tensor([0, 12, 1, 2]))),
])
def test_bad_linear_cross_entropy_input_names_the_argument(arg, override):
    args = dict(hidden=torch.randn(4, 16), weight=torch.randn(12, 16), target=torch.tensor([0, 1, 2, 3]))
    args.update(override)
    with pytest.raises(ValueError, match=rf"^{arg}: "):
        linear_cross_entropy(args.pop("hidden"), args.pop("weight"), args.pop("target"), impl="triton", **args)


def test_bad_decode_input_names_the_argument():
    q, kc = torch.randn(2, 4, 16), torch.randn(2, 10, 2, 16)
    with pytest.raises(ValueError, match="^cache_seqlens: "):
        decode_attention(q, kc, kc, torch.tensor([0, 4], dtype=torch.int32))
    with pytest.raises(ValueError, match="^k_cache: "):
        decode_attention(q, torch.randn(2, 10, 3, 16), torch.randn(2, 10, 3, 16), torch.tensor([1, 4]).int())


def test_explicit_impl_that_cannot_run_is_a_clear_error(monkeypatch):
    logits, target = torch.randn(4, 12), torch.tensor([0, 1, 2, 3])
    with pytest.raises(KernelUnavailableError, match="impl='cuda' for cross_entropy cannot run: CUDA ops need CUDA"):
        cross_entropy(logits, target, impl="cuda")
    q = torch.randn(1, 1, 2, 32)
    with pytest.raises(KernelUnavailableError, match="impl='cuda'"):
        decode_attention(q[:, 0], q, q, torch.tensor([1], dtype=torch.int32), impl="cuda")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(KernelUnavailableError, match="Triton kernels need CUDA tensors"):
        attention(q, q, q, impl="triton")
