"""Preemption without SLURM: SIGUSR1 or --max-wall-time -> checkpoint, exit 75, rerun == uninterrupted."""

import os
import signal
import subprocess
import time

import psutil
import pytest

from bigseq.distributed.preemption import PREEMPTED_EXIT_CODE

from .runner import BIN, ROOT, TINY, TRAIN_PY, free_port, train, train_in_process, train_losses

FLAGS = ["--dropout", "0.1", "--max-update", "20"]


def _start(data: str, args: list[str], log_file: str, nproc: int = 1) -> subprocess.Popen:
    flags = [data, *TINY, *FLAGS, *args, "--log-file", log_file]
    cmd = [os.path.join(BIN, "bigseq"), "train", *flags] if nproc == 1 else \
        [os.path.join(BIN, "deepspeed"), "--num_gpus", str(nproc), "--master_port", str(free_port()), TRAIN_PY, *flags]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for_updates(log_file: str, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(log_file) and len(train_losses(log_file)) >= n:
            return
        assert proc.poll() is None, f"training ended before update {n}:\n{proc.stdout.read()[-3000:]}"
        time.sleep(0.05)
    raise AssertionError(f"no update {n} within {timeout}s")


def _rank_pid(launcher: subprocess.Popen, local_rank: int) -> int:
    for child in psutil.Process(launcher.pid).children(recursive=True):
        if f"--local_rank={local_rank}" in child.cmdline():
            return child.pid
    raise AssertionError(f"no rank {local_rank} under the launcher")


def _interrupted_then_resumed(data, tmp_path, nproc, stop, reason, extra=(), after_updates=4):
    """Train; `stop(proc)` after `after_updates` updates (None: the run stops itself); resume.
    -> (losses, stopped at)"""
    save_dir, log = str(tmp_path / "preempted"), str(tmp_path / "preempted.jsonl")
    proc = _start(data, [*extra, "--save-dir", save_dir], log, nproc)
    if stop is not None:
        if after_updates:
            _wait_for_updates(log, after_updates, proc)
        stop(proc)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_CODE, f"exit code {proc.returncode}:\n{out[-3000:]}"
    assert f"stopped early ({reason})" in out
    stopped_at = max(train_losses(log))
    assert stopped_at < 20
    with open(os.path.join(save_dir, "latest")) as f:
        assert f.read().strip() == f"checkpoint_{stopped_at}"
    resumed = train(data, [*FLAGS, "--save-dir", save_dir], nproc=nproc, log_file=log,
                    launcher="bigseq" if nproc == 1 else "deepspeed")
    assert f"resumed from {save_dir} at update {stopped_at}" in resumed.stdout
    return train_losses(log), stopped_at


@pytest.fixture(scope="module")
def straight_one_rank(tiny_data, tmp_path_factory):
    log = str(tmp_path_factory.mktemp("straight") / "straight.jsonl")
    train(tiny_data, [*FLAGS, "--no-save"], log_file=log)
    return train_losses(log)


def test_sigusr1_saves_exits_75_and_resumes_exactly(tiny_data, tmp_path, straight_one_rank):
    def stop(proc):
        os.kill(proc.pid, signal.SIGSTOP)  # a tiny update takes milliseconds: freeze, so the stop lands mid-run
        os.kill(proc.pid, signal.SIGUSR1)
        os.kill(proc.pid, signal.SIGCONT)
    losses, _ = _interrupted_then_resumed(tiny_data, tmp_path, 1, stop, "SIGUSR1")
    assert losses == straight_one_rank


def _catches(pid: int, sig: signal.Signals) -> bool:
    with open(f"/proc/{pid}/status") as f:
        caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    return bool(caught & (1 << (sig - 1)))


def test_sigusr1_during_start_up_stops_after_the_first_update(tiny_data, tmp_path, straight_one_rank):
    """SLURM's time-limit warning may land while torch is still being imported: Python's default
    action for SIGUSR1 would kill the rank (exit 138) and fail the job instead of requeueing it."""
    def stop(proc):
        deadline = time.monotonic() + 30
        while not _catches(proc.pid, signal.SIGUSR1):  # the first handler: bigseq train's start-up latch
            assert proc.poll() is None and time.monotonic() < deadline, "SIGUSR1 never trapped"
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGSTOP)
        with open(f"/proc/{proc.pid}/maps") as f:  # trapped before torch's library is even loaded
            assert "libtorch" not in f.read(), "SIGUSR1 is trapped only after torch is imported"
        assert not _catches(proc.pid, signal.SIGTERM)  # a cancel during start-up still ends it at once
        os.kill(proc.pid, signal.SIGUSR1)
        os.kill(proc.pid, signal.SIGCONT)
    losses, stopped_at = _interrupted_then_resumed(tiny_data, tmp_path, 1, stop, "SIGUSR1", after_updates=0)
    assert stopped_at == 1
    assert losses == straight_one_rank


def test_max_wall_time_saves_exits_75_and_resumes_exactly(tiny_data, tmp_path, straight_one_rank):
    # a limit shorter than one update: stop after update 1 whatever the machine's speed
    losses, stopped_at = _interrupted_then_resumed(tiny_data, tmp_path, 1, None, "max-wall-time",
                                                   ["--max-wall-time", "00:00:00.001"])
    assert stopped_at == 1
    assert losses == straight_one_rank


def test_bad_max_wall_time_is_one_line(tiny_data, tmp_path):
    proc = train_in_process(tiny_data, ["--max-wall-time", "1:xx", "--save-dir", str(tmp_path / "ck")])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "bigseq train: error: --max-wall-time '1:xx' is not a duration; give seconds (5400) or HH:MM:SS (1:30:00)"]
    assert not os.path.exists(tmp_path / "ck" / "latest")


@pytest.mark.slow
@pytest.mark.launcher
def test_signal_to_one_rank_stops_every_rank(tiny_data, tmp_path):
    def stop(proc):
        rank0, rank1 = _rank_pid(proc, 0), _rank_pid(proc, 1)
        os.kill(rank0, signal.SIGSTOP)  # rank 1 then waits in rank 0's next collective: the stop lands mid-run
        os.kill(rank1, signal.SIGUSR1)  # only rank 1 is told; rank 0 (which prints and logs) must stop too
        os.kill(rank0, signal.SIGCONT)
    _, stopped_at = _interrupted_then_resumed(tiny_data, tmp_path, 2, stop, "another rank's stop request")
    assert os.path.exists(tmp_path / "preempted" / f"checkpoint_{stopped_at}" / "bigseq_meta.json")
