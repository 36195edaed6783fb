"""Which precision a CPU runs fast: native bf16 needs AVX512-BF16 or AMX (x86) or BF16 (Arm).

Without them torch emulates bf16 matmuls, which can be tens of times slower than fp32
(an AVX2-only EPYC: 55 GFLOP/s fp32 vs 0.8 GFLOP/s bf16 on a 1024^3 matmul).
"""

from __future__ import annotations

import platform

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


def fastest_cpu_precision(flags: set[str] | None = None) -> str:
    """bf16 where the CPU has it natively, else fp32."""
    return "bf16" if native_bf16(cpu_flags() if flags is None else flags) else "fp32"


def bf16_warning(flags: set[str], model: str) -> str | None:
    """One line for --precision bf16 on a CPU that emulates it; None where bf16 is native."""
    if native_bf16(flags):
        return None
    return (f"warning: --precision bf16 on {model}, which has no native bf16 (no avx512_bf16 / amx_bf16): "
            f"bf16 matmuls are emulated and far slower; --precision fp32 runs faster on this CPU")


def describe_cpu(cpuinfo: str | None = None) -> str:
    """'<model>, bf16: avx512_bf16, amx_bf16' or '<model>, bf16: emulated (no native bf16)', for result files."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    found = native_bf16(cpu_flags(text))
    return f"{cpu_model(text)}, bf16: {', '.join(found) if found else 'emulated (no native bf16)'}"
