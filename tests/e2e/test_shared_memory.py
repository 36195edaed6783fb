"""Multi-process CPU runs leave no shared memory behind.

DeepSpeed's CPU communicator maps a 66 MiB /dev/shm buffer per rank and never
unlinks it (bigseq does, at exit); left behind, a test suite's worth of runs fills the RAM.
"""

import os
import sys

import pytest

from .runner import train

pytestmark = [pytest.mark.slow, pytest.mark.launcher,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/dev/shm")]


def _shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def test_two_rank_run_leaves_dev_shm_as_it_was(tiny_data):
    before = _shm()
    train(tiny_data, ["--max-update", "2", "--no-save"], nproc=2, launcher="deepspeed")
    leaked = sorted(_shm() - before)
    assert not leaked, f"left in /dev/shm: {leaked}"
