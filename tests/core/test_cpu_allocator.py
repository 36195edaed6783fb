"""CPU allocator policies: keep_freed_memory stops per-step page faults; return_freed_memory gives freed layers back."""

import os
import subprocess
import sys

import pytest

from bigseq import cpu_allocator

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


# ZeRO-3's pattern: a gathered layer is freed, then a smaller block is allocated; glibc's dynamic
# mmap threshold has by then moved the next layer into the heap, which keeps it after it is freed
_RESIDENT_AFTER_FREE = """
import os, sys, torch
from bigseq import cpu_allocator
print(cpu_allocator.apply(sys.argv[1]), file=sys.stderr)
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = rss()
for _ in range(4):
    layers = [torch.ones(3 * 2**20) for _ in range(8)]  # 8 gathered "layers" of 12 MiB
    del layers
    keep = torch.ones(2**16)  # something small stays allocated above them
print((rss() - before) // 2**20)
"""


def _resident_mib_after_free(policy: str) -> int:
    out = subprocess.run([sys.executable, "-c", _RESIDENT_AFTER_FREE, policy], capture_output=True, text=True,
                         check=True).stdout
    return int(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_return_policy_gives_freed_layers_back():
    returned, glibc = _resident_mib_after_free("return"), _resident_mib_after_free("glibc")
    assert returned < 16 and glibc >= 48, (returned, glibc)


def test_unknown_policy_is_one_clear_error(monkeypatch):
    from bigseq.errors import BigseqError
    monkeypatch.setenv("BIGSEQ_CPU_ALLOCATOR", "jemalloc")
    with pytest.raises(BigseqError, match="BIGSEQ_CPU_ALLOCATOR='jemalloc' is not one of keep, return, glibc"):
        cpu_allocator.requested_policy("keep")


def test_bad_policy_stops_bigseq_train_before_any_work(tmp_path):
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "bigseq"), "train", str(tmp_path),
                           "--arch", "llama_tiny", "--batch-size", "8"], capture_output=True, text=True,
                          env={**os.environ, "BIGSEQ_CPU_ALLOCATOR": "jemalloc"}, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["bigseq train: error: BIGSEQ_CPU_ALLOCATOR='jemalloc' is not one of "
                                                "keep, return, glibc; unset it to let bigseq choose"]
