"""How a CPU training process treats the memory it frees (glibc malloc settings).

Two runs want opposite things:

- Speed (ZeRO 0-2, each rank holds the whole model): every update allocates and frees
  the same activations, logits and gradients. By default glibc serves each block above a
  few MB with a fresh mmap() and hands freed memory back to the OS, so each update
  page-faults its large buffers in again: 15,000-30,000 faults per update for a
  5M-parameter model, about a tenth of the step. `keep_freed_memory` serves every block
  from the heap and never trims it; the process then keeps its peak footprint.
- Memory (ZeRO-3, the model does not fit one process): ZeRO-3 gathers each layer's
  parameters and frees them again. glibc raises its mmap threshold to the size of every
  mmapped block freed (up to 32 MiB), so the gathered layers soon land in the heap, which
  gives freed memory back only from its top: anything still allocated above them holds it.
  `return_freed_memory` pins the threshold, so large blocks keep their own mmap and go back
  to the OS when freed.

BIGSEQ_CPU_ALLOCATOR=keep|return|glibc overrides the choice (glibc: leave malloc alone).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from bigseq.errors import BigseqError

# glibc's mallopt() parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
POLICIES = ("keep", "return", "glibc")
_policy: str | None = None  # the one applied in this process


def _mallopt(settings: list[tuple[int, int]]) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success; musl's is a no-op returning 0
    return all(mallopt(param, value) for param, value in settings)


def requested_policy(default: str) -> str:
    value = os.environ.get("BIGSEQ_CPU_ALLOCATOR", "").strip() or default
    if value not in POLICIES:
        raise BigseqError(f"BIGSEQ_CPU_ALLOCATOR={value!r} is not one of {', '.join(POLICIES)}; "
                          f"unset it to let bigseq choose")
    return value


def apply(default: str) -> bool:
    """Apply BIGSEQ_CPU_ALLOCATOR, else `default`; the first policy applied in a process stays.

    False where the C library has no effective mallopt (not Linux, or not glibc), or for "glibc".
    """
    global _policy
    if _policy is not None:
        return _policy != "glibc"
    policy = requested_policy(default)
    if policy == "keep":
        applied = _mallopt([(_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1)])
    elif policy == "return":  # 1 MiB: activations of small models stay in the heap, layers do not
        applied = _mallopt([(_M_MMAP_THRESHOLD, 2**20)])
    else:
        applied = False
    _policy = policy
    return applied


def keep_freed_memory() -> bool:
    """Serve all allocations from the heap and keep freed memory (unless overridden)."""
    return apply("keep")


def return_freed_memory() -> bool:
    """Give blocks of 1 MiB and more back to the OS as soon as they are freed (unless overridden)."""
    return apply("return")
