"""Kernel tests run the Triton kernels on CPU through the interpreter.

TRITON_INTERPRET must be set before a @triton.jit kernel is defined; bigseq.kernels
imports its Triton modules lazily, so setting it here (at collection) is early enough
whatever other test folders imported first. On a GPU machine run the `gpu` tests with
TRITON_INTERPRET=0 so the compiled kernels are exercised.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def poison(monkeypatch):
    """Make the kernels' output allocations NaN-filled, so any element left unwritten fails."""
    from bigseq.kernels import loss_functions
    from bigseq.kernels.triton import attention, cross_entropy

    def nan_empty(*shape, **kw):
        return torch.full(shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape,
                          float("nan"), **kw)

    def nan_empty_like(t, **kw):
        return torch.full_like(t, float("nan"), **kw)

    for module in (attention, cross_entropy, loss_functions):
        monkeypatch.setattr(module, "_empty", nan_empty)
        monkeypatch.setattr(module, "_empty_like", nan_empty_like)
