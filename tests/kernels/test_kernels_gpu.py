"""Compiled Triton and CUDA kernels on a GPU, bf16/fp16, forward and backward, plus a short
training run per impl. Run with ``TRITON_INTERPRET=0 pytest -m gpu tests/kernels`` (the
conftest otherwise turns the interpreter on and the Triton cases skip)."""

import os

import pytest
import torch
from kernel_checks import assert_matches, fp64_leaves, same_dtype_leaves

from bigseq.kernels import attention, cross_entropy, decode_attention, linear_cross_entropy, reference

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
needs_compiled_triton = pytest.mark.skipif(torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") == "1",
                                           reason="run with TRITON_INTERPRET=0 to test compiled Triton")
DTYPES = [torch.bfloat16, torch.float16]


def _attention_case(q, k, v, dtype, **kw):
    ours = same_dtype_leaves(q, k, v)
    out = attention(*ours, impl="triton", **kw)
    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, ours, dout)
    refs = {}
    for label, leaves in (("fp64", fp64_leaves(q, k, v)), ("torch", same_dtype_leaves(q, k, v))):
        ref = reference.attention(*leaves, **kw)
        refs[label] = (ref, *torch.autograd.grad(ref, leaves, dout.to(ref.dtype)))
    for i, mine in enumerate((out, *grads)):
        assert_matches(("out", "dq", "dk", "dv")[i], mine, refs["fp64"][i], refs["torch"][i], dtype)


@needs_compiled_triton
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("causal", [True, False])
def test_triton_attention_padded(dtype, D, causal):
    torch.manual_seed(0)
    q = torch.randn(2, 1000, 8, D, device="cuda", dtype=dtype)
    k, v = (torch.randn(2, 1000, 2, D, device="cuda", dtype=dtype) for _ in range(2))
    _attention_case(q, k, v, dtype, causal=causal, softmax_scale=None)


def test_auto_attention_with_a_window_or_padding_falls_back_to_torch():
    q, k, v = (torch.randn(2, 64, 4, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    pad = torch.arange(64, device="cuda")[None, :] >= torch.tensor([[64], [40]], device="cuda")
    for option in (dict(window=16), dict(key_padding_mask=pad)):
        assert torch.equal(attention(q, k, v, impl="auto", **option), reference.attention(
            q, k, v, causal=True, softmax_scale=None, **option))


@needs_compiled_triton
@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_attention_packed(dtype):
    torch.manual_seed(1)
    cu = torch.tensor([0, 300, 301, 1024, 1500], dtype=torch.int32, device="cuda")
    q, k, v = (torch.randn(1500, 4, 128, device="cuda", dtype=dtype) for _ in range(3))
    _attention_case(q, k, v, dtype, causal=True, softmax_scale=None, cu_seqlens=cu)


def _loss_case(impl, dtype, linear):
    torch.manual_seed(2)
    N, D, V = 1024, 256, 32000
    target = torch.randint(0, V, (N,), device="cuda")
    target[::7] = -100
    kw = dict(label_smoothing=0.1, z_loss=1e-4, reduction="mean")
    if linear:
        leaves = [torch.randn(N, D, device="cuda", dtype=dtype), torch.randn(V, D, device="cuda", dtype=dtype) * 0.05]
        fn, ref_fn = (lambda h, w: linear_cross_entropy(h, w, target, impl=impl, **kw),
                      lambda h, w: reference.linear_cross_entropy(h, w, target, **kw))
    else:
        leaves = [torch.randn(N, V, device="cuda", dtype=dtype) * 2]
        fn, ref_fn = (lambda x: cross_entropy(x, target, impl=impl, **kw),
                      lambda x: reference.cross_entropy(x, target, **kw))
    ours = same_dtype_leaves(*leaves)
    loss, _ = fn(*ours)
    grads = torch.autograd.grad(loss, ours)
    refs = {}
    for label, ref_leaves in (("fp64", fp64_leaves(*leaves)), ("torch", same_dtype_leaves(*leaves))):
        r_loss, _ = ref_fn(*ref_leaves)
        refs[label] = (r_loss, *torch.autograd.grad(r_loss, ref_leaves))
    for i, mine in enumerate((loss, *grads)):
        assert_matches(f"{impl} output {i}", mine, refs["fp64"][i], refs["torch"][i], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("linear", [False, True])
def test_cuda_losses(dtype, linear):
    _loss_case("cuda", dtype, linear)


@needs_compiled_triton
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("linear", [False, True])
def test_triton_losses(dtype, linear):
    _loss_case("triton", dtype, linear)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("D", [64, 128])
def test_cuda_decode_attention(dtype, D):
    torch.manual_seed(3)
    B, S, Hq, Hkv = 3, 700, 8, 2
    q = torch.randn(B, Hq, D, device="cuda", dtype=dtype)
    kc, vc = (torch.randn(B, S, Hkv, D, device="cuda", dtype=dtype) for _ in range(2))
    lens = torch.tensor([1, 333, 700], dtype=torch.int32, device="cuda")
    out = decode_attention(q, kc, vc, lens, impl="cuda")
    ref64 = reference.decode_attention(q.double(), kc.double(), vc.double(), lens, softmax_scale=None)
    ref = reference.decode_attention(q, kc, vc, lens, softmax_scale=None)
    assert_matches("decode out", out, ref64, ref, dtype)
    every = decode_attention(q, kc, vc, None, impl="cuda")  # no lengths: all S entries
    assert_matches("decode out, all entries", every, reference.decode_attention(
        q.double(), kc.double(), vc.double(), None, softmax_scale=None),
        reference.decode_attention(q, kc, vc, None, softmax_scale=None), dtype)


class _TinyLM(torch.nn.Module):
    """Embedding -> one causal self-attention block -> tied LM head, through bigseq.kernels only."""

    def __init__(self, vocab=512, dim=128, heads=2):
        super().__init__()
        self.heads = heads
        self.embed = torch.nn.Embedding(vocab, dim)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, tokens, target, attention_impl, loss_impl):
        x = self.embed(tokens)
        B, S, C = x.shape
        q, k, v = self.qkv(x).view(B, S, 3, self.heads, C // self.heads).unbind(2)
        x = x + self.proj(attention(q, k, v, impl=attention_impl).reshape(B, S, C))
        return linear_cross_entropy(x.reshape(B * S, C), self.embed.weight, target.reshape(-1), impl=loss_impl,
                                    reduction="mean")[0]


@pytest.mark.parametrize("impl", ["triton", "cuda"])
def test_training_curve_matches_torch(impl):
    if impl == "triton" and os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("run with TRITON_INTERPRET=0 to test compiled Triton")
    # the CUDA ops have no training attention kernel: impl="cuda" trains with torch attention
    impls = {"torch": ("torch", "torch"), "triton": ("triton", "triton"), "cuda": ("torch", "cuda")}
    curves = {}
    for name in ("torch", impl):
        torch.manual_seed(4)
        model = _TinyLM().cuda().to(torch.bfloat16)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        data = torch.randint(0, 512, (8, 4, 65), device="cuda")
        losses = []
        for batch in data:
            loss = model(batch[:, :-1], batch[:, 1:], *impls[name])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curves[name] = torch.tensor(losses)
    assert curves["torch"][-1] < curves["torch"][0]
    torch.testing.assert_close(curves[impl], curves["torch"], rtol=2e-2, atol=2e-2)
