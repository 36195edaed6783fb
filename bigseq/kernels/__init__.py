"""Kernel API: attention, cross_entropy, linear_cross_entropy.

Each takes ``impl="auto"|"triton"|"cuda"|"torch"``; "torch" is the reference
and the CPU default. Models and criterions call only these functions.
"""

from bigseq.kernels.api import attention, cross_entropy, linear_cross_entropy  # noqa: F401
