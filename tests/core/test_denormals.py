"""Denormal floats flush to zero in the CLI's process, in torch's worker threads too."""

import os
import subprocess
import sys

import pytest
import torch

from bigseq.distributed import denormals
from bigseq.errors import BigseqError

# 1e-39 is a denormal fp32; a 4M-element op runs on torch's OpenMP threads, started after the setting
_PROBE = """
import torch
from bigseq.distributed.denormals import flush_denormals
flushed = flush_denormals()
tiny = torch.full((1 << 22,), 1e-39)
print(flushed, int((tiny * 1.0).count_nonzero()), torch.get_num_threads())
"""


def _probe(value: str) -> tuple[str, int]:
    env = {**os.environ, "BIGSEQ_FLUSH_DENORMAL": value, "OMP_NUM_THREADS": "2"}
    flushed, nonzero, _ = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                                         check=True).stdout.split()
    return flushed, int(nonzero)


@pytest.mark.skipif(not torch.set_flush_denormal(False), reason="the CPU cannot flush denormals (not x86 SSE3)")
def test_denormals_flush_in_every_thread_unless_turned_off():
    assert _probe("1") == ("True", 0)
    assert _probe("0") == ("False", 1 << 22)


def test_a_bad_switch_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("BIGSEQ_FLUSH_DENORMAL", "yes")
    with pytest.raises(BigseqError, match=r"BIGSEQ_FLUSH_DENORMAL='yes': use 1 .* or 0"):
        denormals.wanted()
