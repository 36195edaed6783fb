"""Two ranks on one CPU machine reduce gradients through DeepSpeed's shared-memory kernel: the run says so,
its losses are gloo's to the bit (two ranks: one addition either way), torchrun's ranks get it as the
deepspeed launcher's do, and the buffer it maps is gone after the run."""

import os

import pytest

from .runner import BIN, free_port, run, train, train_losses

pytestmark = [pytest.mark.slow, pytest.mark.launcher]


def test_shared_memory_all_reduce_under_torchrun_matches_gloo_and_leaves_no_buffer(tiny_data, tmp_path):
    shm_before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    logs = {}
    for route in ("1", "0"):
        log = str(tmp_path / f"shm{route}.jsonl")
        proc = train(tiny_data, ["--max-update", "3", "--log-interval", "1", "--no-save", "--zero-stage", "2"],
                     nproc=2, launcher="torchrun", log_file=log, env={"BIGSEQ_SHM_ALLREDUCE": route})
        said = "gradient all-reduce and ZeRO all-gather: DeepSpeed's shared-memory kernel" in proc.stdout
        assert said == (route == "1"), proc.stdout[-2000:]
        logs[route] = train_losses(log)
    assert len(logs["1"]) == 3 and logs["1"] == logs["0"]
    if os.path.isdir("/dev/shm"):
        assert not set(os.listdir("/dev/shm")) - shm_before


def test_zero_all_gather_through_shared_memory_keeps_every_bit():
    """The all-gather goes through the kernel as a sum over -0.0 padding: -0.0, NaN, infinities and denormals
    arrive as gloo delivers them (a +0.0 padding would flip -0.0)."""
    worker = os.path.join(os.path.dirname(__file__), "shm_gather_worker.py")
    proc = run([os.path.join(BIN, "torchrun"), "--nproc-per-node", "2", "--master-port", str(free_port()), worker],
               timeout=300)
    assert proc.returncode == 0 and "bit-identical to gloo" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
