"""bf16 matmuls on CPU through fp32 kernels, where the CPU runs those faster.

On a CPU without AMX, oneDNN's bf16 GEMM is slower than its fp32 GEMM: half the speed with
AVX512-BF16 (100 vs 190 GFLOP/s per core on an Intel Xeon without AMX), ~70x slower where bf16
is emulated (AVX2 only). Casting both operands to fp32 first gives the same arithmetic as the
bf16 kernel: a product of two bf16 numbers is exact in fp32 and both kernels sum in fp32; only
the order of the sums differs, and the result is rounded to bf16 as before. Weights, activations
and gradients stay bf16 in memory; the fp32 copies live for one matmul.

Whether a CPU takes this route is measured once per process (``bf16_route``); other devices and
dtypes are untouched. ``linear`` is the entry point for the models' projections; ``attention``
(bigseq.kernels.api) takes the same route for its torch path, and so does the fused
linear-cross-entropy (bigseq.kernels.loss_functions).
"""

from __future__ import annotations

import functools
import os
import time

import torch
import torch.nn.functional as F

from bigseq.errors import BigseqError


@functools.lru_cache(maxsize=None)
def matmul_gflops() -> dict[str, float]:
    """Measured CPU matmul speed, GFLOP/s, at torch's current thread count: "fp32", "bf16" (torch's
    bf16 kernel), "bf16 via fp32" (bf16 operands cast to fp32 first), on a (256 x 512) @ (512 x 512)
    product. Each is the fastest of up to 20 calls taken in turns (a burst of other load hits all three
    alike), after one untimed call; a kind stops being timed once its calls took 0.1 s (emulated bf16)."""
    flop = 2 * 256 * 512 * 512
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(256, 512, generator=gen), torch.randn(512, 512, generator=gen)
    a16, b16 = a.bfloat16(), b.bfloat16()
    kinds = {"fp32": lambda: a @ b, "bf16": lambda: a16 @ b16,
             "bf16 via fp32": lambda: (a16.float() @ b16.float()).bfloat16()}
    best, spent = dict.fromkeys(kinds, float("inf")), dict.fromkeys(kinds, 0.0)
    for fn in kinds.values():
        fn()  # kernel selection, allocation
    for _ in range(20):
        for kind, fn in kinds.items():
            if spent[kind] > 0.1:
                continue
            start = time.perf_counter()
            fn()
            took = time.perf_counter() - start
            best[kind], spent[kind] = min(best[kind], took), spent[kind] + took
    return {kind: flop / max(t, 1e-9) / 1e9 for kind, t in best.items()}


def bf16_route() -> str:
    """How bf16 matmuls run on this CPU: "native" (torch's bf16 kernel) or "fp32" (operands cast
    to fp32, which gives the same products and fp32 sums), whichever measured faster; the
    environment variable BIGSEQ_CPU_BF16_MATMUL=native|fp32 decides instead."""
    forced = os.environ.get("BIGSEQ_CPU_BF16_MATMUL", "auto")
    if forced in ("native", "fp32"):
        return forced
    if forced != "auto":
        raise BigseqError(f"BIGSEQ_CPU_BF16_MATMUL={forced!r}: use native, fp32 or auto (measure, the default)")
    return _measured_route()


@functools.lru_cache(maxsize=None)
def _measured_route() -> str:
    # The casts cost up to a third of the fp32 kernel's time at these sizes, and the timings of one
    # process vary by 20%: fp32 must be clearly faster (1.6-1.9x here without AMX, ~70x where bf16 is
    # emulated; slower than bf16 with AMX) for the route to win.
    speed = matmul_gflops()
    return "fp32" if speed["fp32"] > 1.4 * speed["bf16"] else "native"


def routes_to_fp32(t: torch.Tensor) -> bool:
    """True for a CPU bf16 tensor on a CPU whose bf16 matmuls run faster through fp32 kernels."""
    return (t.dtype is torch.bfloat16 and t.device.type == "cpu" and not torch.compiler.is_compiling()
            and bf16_route() == "fp32")


class _LinearInFp32(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.bias_dtype = None if bias is None else bias.dtype
        out = F.linear(x.float(), weight.float(), None if bias is None else bias.float())
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        g_NO = grad.float().reshape(-1, grad.shape[-1])
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = (g_NO @ weight.float()).to(x.dtype).view(x.shape)
        if ctx.needs_input_grad[1]:
            gw = (g_NO.t() @ x.float().reshape(-1, x.shape[-1])).to(weight.dtype)
        if ctx.bias_dtype is not None and ctx.needs_input_grad[2]:
            gb = g_NO.sum(0).to(ctx.bias_dtype)
        return gx, gw, gb


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, with CPU bf16 matmuls routed through fp32 kernels where the CPU runs those faster."""
    if weight.dtype is torch.bfloat16 and routes_to_fp32(x):
        return _LinearInFp32.apply(x, weight, bias)
    return F.linear(x, weight, bias)

