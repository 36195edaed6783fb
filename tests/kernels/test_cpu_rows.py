"""The CPU loss rows (impl='auto' on CPU tensors) vs the torch reference: values, gradients, chunking."""

import pytest
import torch
from kernel_checks import assert_matches, fp64_leaves, same_dtype_leaves

from bigseq.kernels import cpu_rows, cross_entropy, linear_cross_entropy, reference

F32, BF16 = torch.float32, torch.bfloat16


@pytest.fixture
def small_chunks(monkeypatch):
    """A few rows per chunk (and a ragged last chunk), with NaN-filled outputs so a skipped row fails."""
    monkeypatch.setattr(cpu_rows, "_CHUNK_BYTES", 4 * 300 * 4)
    monkeypatch.setattr(cpu_rows, "_empty", lambda *s, **kw: torch.full(s, float("nan"), **kw))
    monkeypatch.setattr(cpu_rows, "_empty_like", lambda t, **kw: torch.full_like(t, float("nan"), **kw))


def _targets(N, V, ignore_index=-100):
    target = torch.randint(0, V, (N,))
    target[::5] = ignore_index
    return target


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("dtype", [F32, BF16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("smoothing,eps,z_loss", [("fairseq", 0.0, 0.0), ("fairseq", 0.1, 1e-3), ("uniform", 0.2, 0.0)])
@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_cross_entropy_matches_reference(dtype, smoothing, eps, z_loss, reduction):
    torch.manual_seed(3)
    N, V = 29, 300
    logits, target = (torch.randn(N, V) * 3).to(dtype), _targets(N, V)
    kw = dict(label_smoothing=eps, smoothing=smoothing, z_loss=z_loss, reduction=reduction)
    ours = same_dtype_leaves(logits)
    loss, nll = cross_entropy(*ours, target, impl="auto", **kw)
    g_loss, g_nll = torch.randn(loss.shape), torch.randn(nll.shape)
    total = (loss * g_loss).sum() + (nll * g_nll).sum()  # both outputs' backward paths count
    (dlogits,) = torch.autograd.grad(total, ours)
    assert dlogits.dtype == dtype
    refs = {}
    for label, leaves in (("fp64", fp64_leaves(logits)), ("torch", same_dtype_leaves(logits))):
        r_loss, r_nll = reference.cross_entropy(*leaves, target, **kw)
        r_total = (r_loss * g_loss.to(r_loss.dtype)).sum() + (r_nll * g_nll.to(r_nll.dtype)).sum()
        refs[label] = (r_loss, r_nll, *torch.autograd.grad(r_total, leaves))
    for i, (name, mine) in enumerate((("loss", loss), ("nll", nll), ("dlogits", dlogits))):
        assert_matches(name, mine, refs["fp64"][i], refs["torch"][i], dtype)
    # the forward is the reference's own arithmetic, row for row
    assert torch.equal(loss, refs["torch"][0]) and torch.equal(nll, refs["torch"][1])


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("dtype,chunk_rows,reduction,eps", [(F32, None, "sum", 0.1), (F32, 7, "none", 0.0),
                                                             (BF16, 16, "mean", 0.0)])
def test_linear_cross_entropy_matches_unfused(dtype, chunk_rows, reduction, eps):
    torch.manual_seed(4)
    N, D, V = 37, 32, 300
    leaves = [torch.randn(N, D).to(dtype), (torch.randn(V, D) * 0.3).to(dtype)]
    target, kw = _targets(N, V, ignore_index=1), dict(ignore_index=1, label_smoothing=eps, reduction=reduction)
    ours = same_dtype_leaves(*leaves)
    loss, nll = linear_cross_entropy(*ours, target, impl="auto", chunk_rows=chunk_rows, **kw)
    g_loss = torch.randn(loss.shape)
    grads = torch.autograd.grad((loss * g_loss).sum(), ours)
    refs = {}
    for label, ref_leaves in (("fp64", fp64_leaves(*leaves)), ("torch", same_dtype_leaves(*leaves))):
        r_loss, r_nll = reference.linear_cross_entropy(*ref_leaves, target, **kw)
        refs[label] = (r_loss, r_nll, *torch.autograd.grad((r_loss * g_loss.to(r_loss.dtype)).sum(), ref_leaves))
    for i, (name, mine) in enumerate(zip(("loss", "nll", "dhidden", "dweight"), (loss, nll, *grads))):
        assert_matches(name, mine, refs["fp64"][i], refs["torch"][i], dtype)


def test_auto_on_cpu_takes_the_row_backend_and_torch_the_reference(monkeypatch):
    calls = []
    real = cpu_rows.rows_forward
    monkeypatch.setattr(cpu_rows, "rows_forward", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    logits, target = torch.randn(6, 11), torch.randint(0, 11, (6,))
    cross_entropy(logits, target, impl="torch")
    assert calls == []
    cross_entropy(logits, target)
    cross_entropy(logits.double(), target)  # fp64 stays with the reference
    assert calls == [1]
