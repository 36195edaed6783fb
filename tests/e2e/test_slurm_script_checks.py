"""The sbatch scripts' own checks, run with bash and SLURM's environment variables (no cluster):
scontrol and srun are stand-ins on PATH that record how they were called."""

import os
import subprocess

import pytest

from .runner import ROOT

SCRIPT = os.path.join(ROOT, "launch", "slurm", "deepspeed_per_node.sbatch")


def run_script(tmp_path, **slurm_env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("scontrol", "srun"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/{name}.calls\necho node1\n')
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "node1",
           "SLURM_JOB_NUM_NODES": "1", "GPUS_PER_NODE": "2", **slurm_env}
    proc = subprocess.run(["bash", SCRIPT, "data-bin", "--arch", "llama_tiny"], env=env, capture_output=True,
                          text=True, timeout=60)
    srun = tmp_path / "srun.calls"
    return proc, srun.read_text() if srun.exists() else None


@pytest.mark.parametrize("slurm_env", [{"SLURM_NTASKS_PER_NODE": "2"}, {"SLURM_TASKS_PER_NODE": "2(x2)"},
                                       {"SLURM_STEP_TASKS_PER_NODE": "4"}])
def test_more_than_one_task_per_node_is_one_clear_line(tmp_path, slurm_env):
    proc, srun = run_script(tmp_path, **slurm_env)
    assert proc.returncode == 2 and srun is None  # nothing launched
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "GPUS_PER_NODE=" in lines[0] and "--ntasks-per-node=1" in lines[0], proc.stderr


def test_one_task_per_node_launches(tmp_path):
    proc, srun = run_script(tmp_path, SLURM_NTASKS_PER_NODE="1", SLURM_TASKS_PER_NODE="1(x2)")
    assert proc.returncode == 0, proc.stderr
    assert srun.startswith("--kill-on-bad-exit=0 --ntasks-per-node=1 bash -c") and "--arch llama_tiny" in srun
