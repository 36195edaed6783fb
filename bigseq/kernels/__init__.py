"""Kernel API: attention, decode_attention, cross_entropy, linear_cross_entropy.

Each takes ``impl="auto"|"triton"|"cuda"|"torch"``; "torch" is the reference
and the CPU default. Models and criterions call only these functions.
Importing this package imports neither triton nor the CUDA extension.
"""

from bigseq.kernels.api import (
    KernelUnavailableError,
    attention,
    cross_entropy,
    decode_attention,
    linear_cross_entropy,
)

__all__ = ["KernelUnavailableError", "attention", "cross_entropy", "decode_attention", "linear_cross_entropy"]
