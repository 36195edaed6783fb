"""A rank killed mid-run: `torchrun --max-restarts 1` restarts the group, which resumes from
save_dir/latest and ends with the same losses as a run nobody disturbed."""

import os
import signal
import subprocess
import time

import pytest

from .runner import BIN, MULTI_RANK, ROOT, TINY, TRAIN_PY, free_port, train, train_losses

UPDATES = 30
FLAGS = ["--max-update", str(UPDATES), "--save-interval-updates", "5", "--disable-validation", "--zero-stage", "1"]
pytestmark = [pytest.mark.slow, pytest.mark.launcher]


def _workers(agent_pid: int) -> dict[int, int]:
    """rank -> pid of the training processes torchrun's agent started (its direct children)."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != agent_pid:
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        except (OSError, ValueError):
            continue  # exited meanwhile
        if b"RANK" in env:
            found[int(env[b"RANK"])] = int(name)
    return found


def _kill_rank_after_first_checkpoint(agent: subprocess.Popen, save_dir: str, rank: int, timeout: float = 240) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and agent.poll() is None:
        pid = _workers(agent.pid).get(rank)
        if os.path.exists(os.path.join(save_dir, "latest")) and pid:
            os.kill(pid, signal.SIGKILL)
            return pid
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint in {save_dir} before the run ended (rc {agent.poll()})")


def test_killed_rank_restarts_and_resumes_exactly(tiny_data, tmp_path):
    straight_log, faulted_log = str(tmp_path / "straight.jsonl"), str(tmp_path / "faulted.jsonl")
    train(tiny_data, [*FLAGS, "--save-dir", str(tmp_path / "straight")], nproc=2, launcher=MULTI_RANK,
          log_file=straight_log)

    save_dir = str(tmp_path / "faulted")
    agent = subprocess.Popen(
        [os.path.join(BIN, "torchrun"), "--nproc-per-node", "2", "--max-restarts", "1", "--master-port",
         str(free_port()), TRAIN_PY, tiny_data, *TINY, *FLAGS, "--save-dir", save_dir, "--log-file", faulted_log],
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        _kill_rank_after_first_checkpoint(agent, save_dir, rank=1)
        out = agent.communicate(timeout=300)[0]
    finally:
        if agent.poll() is None:
            agent.kill()
    assert agent.returncode == 0, out[-4000:]
    resumed = [line for line in out.splitlines() if "resumed from" in line]
    assert len(resumed) == 1, out[-4000:]  # exactly one restart, and it found the checkpoint
    resumed_at = int(resumed[0].rsplit("update", 1)[1])
    assert 5 <= resumed_at < UPDATES, resumed[0]

    straight, faulted = train_losses(straight_log), train_losses(faulted_log)  # last record per update wins
    assert sorted(faulted) == sorted(straight) == list(range(1, UPDATES + 1))
    for n in range(resumed_at + 1, UPDATES + 1):
        assert abs(faulted[n] - straight[n]) <= 2e-5, f"update {n}: {faulted[n]} vs {straight[n]}"
