"""CPU allocator policies: keep_freed_memory stops per-step page faults; return_freed_memory gives freed layers back."""

import ctypes
import subprocess
import sys

import pytest

from bigseq.distributed import cpu_allocator

# a step allocates and frees (512 x 32768) fp32 logits (64 MB) and their gradient, like an LM's output layer
_PROBE = """
import resource, sys, torch
from bigseq.distributed import cpu_allocator
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


# ZeRO-3's pattern: gathered layers are allocated and freed again, round after round. glibc raises its
# mmap threshold to the size of the first mmapped block freed, so from the second round on the layers
# land in the heap, whose freed memory goes back to the OS only when it happens to lie at the heap's top
# (that depends on what else the process allocated, so it is not asserted). Where each round's layers
# live is deterministic: mallinfo2's mmapped bytes while they are alive.
_LAYER_PLACEMENT = """
import ctypes, os, sys, torch
from bigseq.distributed import cpu_allocator
class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
cpu_allocator.apply(sys.argv[1])
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before, mmapped = rss(), []
for _ in range(4):
    layers = [torch.ones(3 * 2**20) for _ in range(8)]  # 8 gathered "layers" of 12 MiB
    mmapped.append(libc.mallinfo2().hblkhd // 2**20)
    del layers
    keep = torch.ones(2**16)  # something small stays allocated
print(*mmapped, (rss() - before) // 2**20)
"""


def _layer_placement(policy: str) -> tuple[list[int], int]:
    out = subprocess.run([sys.executable, "-c", _LAYER_PLACEMENT, policy], capture_output=True, text=True,
                         check=True).stdout.split()
    return [int(mib) for mib in out[:-1]], int(out[-1])


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _has_mallinfo2(), reason="glibc >= 2.33 malloc")
def test_return_policy_keeps_layers_in_their_own_mappings_and_gives_them_back():
    mmapped, resident_after = _layer_placement("return")
    assert all(mib >= 96 for mib in mmapped), mmapped  # every round's 8 x 12 MiB are mmapped...
    assert resident_after < 16, resident_after  # ...and unmapped when freed
    glibc_mmapped, _ = _layer_placement("glibc")
    # glibc's default: the first round is mmapped, then the raised threshold puts the layers in the heap
    assert glibc_mmapped[0] >= 96 and all(mib < 16 for mib in glibc_mmapped[1:]), glibc_mmapped


def test_unknown_policy_is_one_clear_error(monkeypatch):
    from bigseq.errors import BigseqError
    monkeypatch.setenv("BIGSEQ_CPU_ALLOCATOR", "jemalloc")
    with pytest.raises(BigseqError, match="BIGSEQ_CPU_ALLOCATOR='jemalloc' is not one of keep, return, glibc"):
        cpu_allocator.requested_policy("keep")


def test_bad_policy_stops_bigseq_train_before_any_work(tmp_path, monkeypatch, capsys):
    from bigseq.cli.main import main
    monkeypatch.setenv("BIGSEQ_CPU_ALLOCATOR", "jemalloc")
    with pytest.raises(SystemExit) as exit_code:  # `bigseq train` ends by SystemExit (it may join a process group)
        main(["train", str(tmp_path), "--arch", "llama_tiny", "--batch-size", "8"])
    assert exit_code.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "bigseq train: error: BIGSEQ_CPU_ALLOCATOR='jemalloc' is not one of keep, return, glibc; unset it to let "
        "bigseq choose"]
