"""Which precision a CPU runs fast: native bf16 needs AVX512-BF16 or AMX (x86) or BF16 (Arm).

Without them torch emulates bf16 matmuls, which can be tens of times slower than fp32
(an AVX2-only EPYC: 55 GFLOP/s fp32 vs 0.8 GFLOP/s bf16 on a 1024^3 matmul). The flags do not
settle it: AVX512-BF16 without AMX still runs oneDNN's bf16 GEMM at half its fp32 speed (an
Intel Xeon: 100 vs 190 GFLOP/s per core). So the choice below is measured, once per process,
by ``bigseq.kernels.cpu_bf16.matmul_gflops``.
"""

from __future__ import annotations

import platform

from bigseq.kernels.cpu_bf16 import bf16_route, matmul_gflops

# x86 flags (the "flags" line) and Arm's (the "Features" line) that mean bf16 arithmetic in hardware
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The first CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model(cpuinfo: str | None = None) -> str:
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        if line.split(":")[0].strip() == "model name":
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def native_bf16(flags: set[str]) -> list[str]:
    """The bf16 instructions among ``flags`` (empty: bf16 is emulated)."""
    return [f for f in BF16_FLAGS if f in flags]


def fastest_cpu_precision(speed: dict[str, float] | None = None) -> str:
    """bf16 where its own kernels clearly (by 10%) beat fp32's on this CPU, else fp32. (bf16 through fp32
    kernels is fp32's speed less the casts: never the reason to pick bf16.)"""
    speed = matmul_gflops() if speed is None else speed
    return "bf16" if speed["bf16"] > 1.1 * speed["fp32"] else "fp32"


def bf16_warning(flags: set[str], model: str, speed: dict[str, float] | None = None) -> str | None:
    """One line for --precision bf16 on a CPU where fp32 matmuls run faster; None where bf16 wins."""
    speed = matmul_gflops() if speed is None else speed
    if fastest_cpu_precision(speed) == "bf16":
        return None
    why = "no native bf16 (no avx512_bf16 / amx_bf16)" if not native_bf16(flags) else "no amx_bf16"
    route = (f", {speed['bf16 via fp32']:.0f} through fp32 kernels, which bigseq uses" if bf16_route() == "fp32"
             else "")
    return (f"warning: --precision bf16 on {model} ({why}): its bf16 matmuls measured {speed['bf16']:.0f} GFLOP/s "
            f"vs {speed['fp32']:.0f} in fp32{route}; --precision fp32 runs faster on this CPU")


def describe_cpu(cpuinfo: str | None = None) -> str:
    """'<model>, bf16: avx512_bf16, amx_bf16' or '<model>, bf16: emulated (no native bf16)', for result files."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    found = native_bf16(cpu_flags(text))
    return f"{cpu_model(text)}, bf16: {', '.join(found) if found else 'emulated (no native bf16)'}"
