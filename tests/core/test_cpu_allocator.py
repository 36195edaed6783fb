"""keep_freed_memory: a training-like loop stops page-faulting its large buffers in every step."""

import subprocess
import sys

import pytest

# a step allocates and frees (512 x 32768) fp32 logits (64 MB) and their gradient, like an LM's output layer
_PROBE = """
import resource, sys, torch
from bigseq import cpu_allocator
applied = cpu_allocator.keep_freed_memory() if sys.argv[1] == "keep" else False
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
hidden = torch.randn(512, 64, requires_grad=True)
weight = torch.randn(32768, 64, requires_grad=True)
per_step = []
for step in range(8):
    before = faults()
    torch.nn.functional.linear(hidden, weight).logsumexp(-1).sum().backward()
    per_step.append(faults() - before)
# the best warm step: the kernel's proactive reclaim (DAMON) may page out an idle freed
# buffer now and then, which refaults one step; it never does so for every step
print(applied, min(per_step[2:]))
"""


def _faults_per_step(mode: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True).stdout
    applied, faults = out.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_steps_reuse_the_freed_pages():
    applied, kept = _faults_per_step("keep")
    assert applied
    _, default = _faults_per_step("default")
    # by default every step maps its 64 MB buffers afresh: tens of thousands of 4 KB page faults
    assert kept * 5 < default, (kept, default)
