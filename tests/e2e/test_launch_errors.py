"""Launch mistakes end with one clear line and a non-zero exit, never a hang or a deep traceback."""

import os
import time

import pytest

from .runner import BIN, TINY, TRAIN_PY, free_port, run, train

FLAGS = ["--max-update", "2", "--no-save", "--disable-validation"]


def _error_lines(proc) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if "bigseq train: error:" in line
            or line.startswith("bigseq: error:")]


def _assert_one_clear_error(proc, *needles: str) -> str:
    assert proc.returncode != 0
    lines = _error_lines(proc)
    assert lines, f"no error line:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.slow
@pytest.mark.launcher
def test_hostfile_with_fewer_slots_than_processes(tiny_data, tmp_path):
    # DeepSpeed alone would start 2 processes on a host the hostfile grants 1
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=1\n")
    proc = run([os.path.join(BIN, "deepspeed"), "--num_gpus", "2", "--hostfile", str(hostfile), "--no_ssh",
                "--node_rank", "0", "--master_addr", "127.0.0.1", "--master_port", str(free_port()), TRAIN_PY,
                tiny_data, *TINY, *FLAGS], timeout=300)
    assert proc.returncode != 0
    lines = _error_lines(proc)
    assert lines and "--num_gpus 2" in lines[0] and "slots=1" in lines[0], proc.stdout[-3000:]
    assert "done:" not in proc.stdout


def test_unreachable_master_fails_within_the_init_timeout(tiny_data):
    # rank 1 of 2 waits for a rank-0 store that never comes up: torch alone would retry for 10 minutes
    port = free_port()
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "BIGSEQ_DIST_INIT_TIMEOUT": "5"}
    start = time.monotonic()
    proc = run([os.path.join(BIN, "python"), TRAIN_PY, tiny_data, *TINY, *FLAGS], env=env, timeout=120)
    elapsed = time.monotonic() - start
    _assert_one_clear_error(proc, f"127.0.0.1:{port}", "within 5 s")
    assert proc.returncode == 2
    assert elapsed < 60, f"took {elapsed:.0f} s"


@pytest.mark.parametrize("env,needle", [
    ({"SLURM_PROCID": "1"}, "SLURM_NTASKS is not"),
    ({"SLURM_PROCID": "3", "SLURM_NTASKS": "2"}, "not below SLURM_NTASKS=2"),
    ({"RANK": "1"}, "WORLD_SIZE is not"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "", "MASTER_PORT": ""}, "MASTER_ADDR and MASTER_PORT not set"),
    ({"BIGSEQ_DIST_INIT_TIMEOUT": "soon"}, "BIGSEQ_DIST_INIT_TIMEOUT='soon'"),
], ids=["procid-without-ntasks", "procid-out-of-range", "rank-without-world-size", "no-master", "bad-timeout"])
def test_partial_launch_environment(tiny_data, env, needle):
    proc = train(tiny_data, FLAGS, env=env, check=False, timeout=120)
    _assert_one_clear_error(proc, needle)
