"""CPU bf16 matmuls through fp32 kernels: the same values and gradients as torch's bf16 kernels (up to the
order of fp32 sums), the route measured or forced, and the models' layers keeping nn.Linear's state."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bigseq import kernels
from bigseq.errors import BigseqError
from bigseq.kernels import cpu_bf16
from bigseq.modules.linear import Linear


def _bf16_ulps(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference in units of bf16's spacing at b's magnitude (8 significant bits)."""
    scale = b.float().abs().clamp_min(1e-3) * 2.0 ** -7
    return ((a.float() - b.float()).abs() / scale).max().item()


def _by_route(monkeypatch, run, *leaves):
    """route -> [run()'s output, then the gradient of each leaf given (None ones skipped)], for both routes."""
    inputs = [t for t in leaves if t is not None]
    results = {}
    for route in ("native", "fp32"):
        monkeypatch.setenv("BIGSEQ_CPU_BF16_MATMUL", route)
        for t in inputs:
            t.grad = None
        results[route] = [run().detach(), *(t.grad for t in inputs)]
    return results


@pytest.mark.parametrize("bias", [True, False])
def test_linear_through_fp32_matches_torch_bf16_values_and_gradients(monkeypatch, bias):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 64, generator=gen).bfloat16().requires_grad_()
    w = (torch.randn(48, 64, generator=gen) / 8).bfloat16().requires_grad_()
    b = torch.randn(48, generator=gen).bfloat16().requires_grad_() if bias else None
    g = torch.randn(3, 5, 48, generator=gen).bfloat16()
    def run():
        out = cpu_bf16.linear(x, w, b)
        out.backward(g)
        return out
    results = _by_route(monkeypatch, run, x, w, b)
    for fast, native in zip(results["fp32"], results["native"]):
        assert fast.dtype == torch.bfloat16 and fast.shape == native.shape
        assert _bf16_ulps(fast, native) <= 2  # a rounding apart at most: only the summation order differs


def test_linear_through_fp32_is_exact_bf16_products_summed_in_fp32(monkeypatch):
    monkeypatch.setenv("BIGSEQ_CPU_BF16_MATMUL", "fp32")
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(4, 32, generator=gen).bfloat16(), torch.randn(8, 32, generator=gen).bfloat16()
    expected = (x.double() @ w.double().t()).bfloat16()  # exact products, (near-)exact sum, one rounding
    assert _bf16_ulps(cpu_bf16.linear(x, w), expected) <= 1


def test_only_cpu_bf16_takes_the_route(monkeypatch):
    monkeypatch.setenv("BIGSEQ_CPU_BF16_MATMUL", "fp32")
    assert cpu_bf16.routes_to_fp32(torch.zeros(2, dtype=torch.bfloat16))
    assert not cpu_bf16.routes_to_fp32(torch.zeros(2))
    assert not cpu_bf16.routes_to_fp32(torch.zeros(2, dtype=torch.float16))
    monkeypatch.setenv("BIGSEQ_CPU_BF16_MATMUL", "native")
    assert not cpu_bf16.routes_to_fp32(torch.zeros(2, dtype=torch.bfloat16))


def test_measured_speeds_and_route(monkeypatch):
    speed = cpu_bf16.matmul_gflops()
    assert set(speed) == {"fp32", "bf16", "bf16 via fp32"} and all(v > 0 for v in speed.values())
    monkeypatch.delenv("BIGSEQ_CPU_BF16_MATMUL", raising=False)
    expected = "fp32" if speed["fp32"] > 1.4 * speed["bf16"] else "native"
    assert cpu_bf16.bf16_route() == expected


def test_attention_torch_path_through_fp32_matches_bf16_sdpa(monkeypatch):
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 16, 4, 32, generator=gen).bfloat16() for _ in range(3))
    outs = {}
    for route in ("native", "fp32"):
        monkeypatch.setenv("BIGSEQ_CPU_BF16_MATMUL", route)
        outs[route] = kernels.attention(q, k, v, causal=True, impl="torch")
    assert outs["fp32"].dtype == torch.bfloat16
    exact = kernels.attention(q.float(), k.float(), v.float(), causal=True, impl="torch")
    # the fp32 route is the exact result rounded once; SDPA's bf16 kernel also rounds its probabilities
    assert (outs["fp32"].float() - exact).abs().max() <= (outs["native"].float() - exact).abs().max() + 1e-6
    assert torch.allclose(outs["fp32"].float(), outs["native"].float(), atol=3e-2)


def test_bigseq_linear_keeps_nn_linear_parameters_and_state_dict(monkeypatch):
    monkeypatch.setenv("BIGSEQ_CPU_BF16_MATMUL", "fp32")
    torch.manual_seed(0)
    ours = Linear(16, 8)
    theirs = nn.Linear(16, 8)
    theirs.load_state_dict(ours.state_dict())
    assert isinstance(ours, nn.Linear) and list(ours.state_dict()) == ["weight", "bias"]
    x = torch.randn(5, 16)
    assert torch.equal(ours(x), theirs(x))  # fp32: F.linear itself
    ours, x = ours.bfloat16(), x.bfloat16()
    assert _bf16_ulps(ours(x), F.linear(x, ours.weight, ours.bias)) <= 2


def test_a_bad_route_value_is_one_line_naming_the_choices(monkeypatch):
    monkeypatch.setenv("BIGSEQ_CPU_BF16_MATMUL", "fp-32")
    with pytest.raises(BigseqError, match="BIGSEQ_CPU_BF16_MATMUL='fp-32': use native, fp32 or auto"):
        cpu_bf16.linear(torch.zeros(2, 4, dtype=torch.bfloat16), torch.zeros(3, 4, dtype=torch.bfloat16))


@pytest.mark.parametrize("bias", [True, False])
def test_fused_linear_cross_entropy_through_fp32_matches_the_bf16_kernels(monkeypatch, bias):
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(40, 32, generator=gen).bfloat16().requires_grad_()
    w = (torch.randn(96, 32, generator=gen) / 4).bfloat16().requires_grad_()
    b = torch.randn(96, generator=gen).bfloat16().requires_grad_() if bias else None
    target = torch.randint(0, 96, (40,), generator=gen)
    def run():
        loss, _ = kernels.linear_cross_entropy(h, w, target, bias=b, label_smoothing=0.1, impl="auto",  # CPU rows
                                               chunk_rows=16)
        loss.backward()
        return loss
    results = _by_route(monkeypatch, run, h, w, b)
    for fast, native in zip(results["fp32"], results["native"]):
        assert fast.dtype == native.dtype and fast.shape == native.shape
        torch.testing.assert_close(fast.float(), native.float(), rtol=2e-2, atol=2e-2)
