"""Triton cross-entropy and chunked linear cross-entropy (interpreter on CPU) vs the torch reference.

Vocab sizes are not multiples of the interpreter's 128-wide vocab block.
"""

import pytest
import torch
from kernel_checks import assert_matches, fp64_leaves, same_dtype_leaves

from bigseq.kernels import cross_entropy, linear_cross_entropy, reference

F32, F16 = torch.float32, torch.float16


def _targets(N, V, ignore_every=5, ignore_index=-100):
    target = torch.randint(0, V, (N,))
    target[::ignore_every] = ignore_index
    return target


def _grads(loss, nll, leaves, g_loss, g_nll):
    """Gradients of a random combination of both outputs (so both backward paths count)."""
    total = (loss * g_loss.to(loss.dtype)).sum() + (nll * g_nll.to(nll.dtype)).sum()
    return torch.autograd.grad(total, leaves)


def _check_ce(logits, target, dtype, **kw):
    ours = same_dtype_leaves(logits)
    loss, nll = cross_entropy(*ours, target, impl="triton", **kw)
    g_loss, g_nll = torch.randn(loss.shape), torch.randn(nll.shape)
    (dlogits,) = _grads(loss, nll, ours, g_loss, g_nll)
    refs = {}
    for label, leaves in (("fp64", fp64_leaves(logits)), ("torch", same_dtype_leaves(logits))):
        r_loss, r_nll = reference.cross_entropy(*leaves, target, **kw)
        refs[label] = (r_loss, r_nll, *_grads(r_loss, r_nll, leaves, g_loss, g_nll))
    for i, (name, mine) in enumerate((("loss", loss), ("nll", nll), ("dlogits", dlogits))):
        assert_matches(name, mine, refs["fp64"][i], refs["torch"][i], dtype)
    assert loss.dtype == torch.float32


@pytest.mark.usefixtures("poison")
@pytest.mark.parametrize("dtype", [F32, F16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("smoothing,eps,z_loss",
                         [("fairseq", 0.1, 0.0), ("uniform", 0.2, 1e-3), ("fairseq", 0.0, 1e-2)])
@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_cross_entropy_matches_reference(dtype, smoothing, eps, z_loss, reduction):
    torch.manual_seed(7)
    N, V = 29, 300
    logits = (torch.randn(N, V) * 3).to(dtype)
    _check_ce(logits, _targets(N, V), dtype, label_smoothing=eps, smoothing=smoothing, z_loss=z_loss,
              reduction=reduction)


@pytest.mark.usefixtures("poison")
def test_cross_entropy_batched_shape_and_custom_ignore_index():
    torch.manual_seed(8)
    logits = torch.randn(3, 7, 130)
    target = torch.randint(0, 130, (3, 7))
    target[0, :4] = 1  # ignore_index=1 also hides a real class
    _check_ce(logits, target, F32, ignore_index=1, label_smoothing=0.1, reduction="none")


def test_uniform_smoothing_equals_pytorch():
    torch.manual_seed(9)
    logits, target = torch.randn(20, 150), _targets(20, 150)
    loss, _ = cross_entropy(logits, target, label_smoothing=0.15, smoothing="uniform", reduction="mean",
                            impl="triton")
    expected = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.15, reduction="mean")
    torch.testing.assert_close(loss, expected)


def _check_linear(hidden, weight, bias, target, dtype, chunk_rows, **kw):
    leaves = [hidden, weight] + ([bias] if bias is not None else [])
    ours = same_dtype_leaves(*leaves)
    loss, nll = linear_cross_entropy(ours[0], ours[1], target, bias=ours[2] if bias is not None else None,
                                     impl="triton", chunk_rows=chunk_rows, **kw)
    g_loss = torch.randn(loss.shape)
    grads = torch.autograd.grad((loss * g_loss).sum(), ours)
    refs = {}
    for label, ref_leaves in (("fp64", fp64_leaves(*leaves)), ("torch", same_dtype_leaves(*leaves))):
        r_loss, r_nll = reference.linear_cross_entropy(ref_leaves[0], ref_leaves[1], target,
                                                       bias=ref_leaves[2] if bias is not None else None, **kw)
        refs[label] = (r_loss, r_nll, *torch.autograd.grad((r_loss * g_loss.to(r_loss.dtype)).sum(), ref_leaves))
    names = ("loss", "nll", "dhidden", "dweight", "dbias")
    for i, mine in enumerate((loss, nll, *grads)):
        assert_matches(names[i], mine, refs["fp64"][i], refs["torch"][i], dtype)


@pytest.mark.usefixtures("poison")
@pytest.mark.parametrize("dtype,with_bias,chunk_rows,reduction,eps,z_loss", [
    (F32, False, None, "sum", 0.1, 1e-3),
    (F32, True, 7, "mean", 0.0, 0.0),
    (F32, True, 8, "none", 0.1, 1e-3),
    (F16, True, 16, "mean", 0.1, 0.0),
])
def test_linear_cross_entropy_matches_unfused(dtype, with_bias, chunk_rows, reduction, eps, z_loss):
    torch.manual_seed(10)
    N, D, V = 37, 32, 300
    hidden = torch.randn(N, D).to(dtype)
    weight = (torch.randn(V, D) * 0.3).to(dtype)
    bias = torch.randn(V).to(dtype) if with_bias else None
    _check_linear(hidden, weight, bias, _targets(N, V, ignore_every=4), dtype, chunk_rows,
                  label_smoothing=eps, z_loss=z_loss, reduction=reduction)


def test_linear_cross_entropy_nll_grad_when_loss_is_nll():
    torch.manual_seed(11)
    hidden = torch.randn(10, 16, requires_grad=True)
    weight = torch.randn(40, 16, requires_grad=True)
    target = torch.randint(0, 40, (10,))
    _, nll = linear_cross_entropy(hidden, weight, target, impl="triton")
    (dh,) = torch.autograd.grad(nll, hidden)
    _, ref_nll = reference.linear_cross_entropy(hidden, weight, target)
    torch.testing.assert_close(dh, torch.autograd.grad(ref_nll, hidden)[0])


def test_linear_cross_entropy_nll_grad_with_smoothing_is_a_clear_error():
    hidden = torch.randn(6, 16, requires_grad=True)
    weight = torch.randn(40, 16)
    _, nll = linear_cross_entropy(hidden, weight, torch.randint(0, 40, (6,)), label_smoothing=0.1, impl="triton")
    with pytest.raises(RuntimeError, match="only `loss` is differentiable"):
        nll.backward()
