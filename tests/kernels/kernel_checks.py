"""Tolerance in the style of FlashAttention's tests: the kernel's error against an fp64
reference may be at most twice the error of the same-dtype torch implementation, plus
a small term relative to the reference's magnitude."""

import torch

ATOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def assert_matches(name, ours, ref64, torch_same_dtype, dtype):
    assert ours.shape == ref64.shape, f"{name}: shape {tuple(ours.shape)} != {tuple(ref64.shape)}"
    assert torch.isfinite(ours).all(), f"{name}: non-finite values (unwritten or overflowed elements)"
    err = (ours.double() - ref64).abs().max().item()
    base = (torch_same_dtype.double() - ref64).abs().max().item()
    atol = ATOL[dtype] * max(1.0, ref64.abs().max().item())
    assert err <= 2 * base + atol, f"{name}: error {err:.3g} > 2 x torch's {base:.3g} + {atol:.3g}"


def fp64_leaves(*tensors):
    return [t.detach().double().requires_grad_() for t in tensors]


def same_dtype_leaves(*tensors):
    return [t.detach().clone().requires_grad_() for t in tensors]
