"""Stop cleanly before the cluster stops us: SIGUSR1/SIGTERM or --max-wall-time.

SLURM warns a job with SIGUSR1 (`--signal=USR1@120`) before its time limit and
sends SIGTERM when it preempts or cancels it. Either signal only sets a flag;
the update in flight finishes, every rank saves the checkpoint, and the process
exits with PREEMPTED_EXIT_CODE so the job script can requeue and resume from
--save-dir. A signal may reach only some ranks, and their wall clocks differ a
little, so the decision is an all-reduce (MAX) of one flag per update.
"""

from __future__ import annotations

import signal
import threading
import time

import torch
import torch.distributed as dist

from bigseq.config.wall_time import parse_wall_time
from bigseq.distributed import signal_latch
from bigseq.distributed.launch_env import shutdown

# sysexits.h EX_TEMPFAIL, "temporary failure; retry later": a checkpoint was saved, run the job again
PREEMPTED_EXIT_CODE = 75
SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class StopRequest:
    """Traps the signals on this rank and answers, collectively, 'stop after this update?'."""

    def __init__(self, max_wall_time: str | None, world_size: int, device: torch.device):
        self.limit_s = parse_wall_time(max_wall_time)
        self.start = time.monotonic()
        self.world_size, self.device = world_size, device
        # why this rank wants to stop (None: it does not); a signal may have come during start-up
        self.reason: str | None = signal_latch.take()
        self.previous = {}
        if threading.current_thread() is threading.main_thread():  # Python handles signals there only
            self.previous = {sig: signal_latch.original(sig, signal.signal(sig, self._on_signal)) for sig in SIGNALS}

    def _on_signal(self, signum, frame) -> None:
        # only a flag: the handler may interrupt DeepSpeed anywhere, so nothing else happens here
        self.reason = self.reason or signal.Signals(signum).name

    def should_stop(self) -> bool:
        """Collective: every rank calls it once per update, in the same order."""
        if self.reason is None and self.limit_s is not None and time.monotonic() - self.start >= self.limit_s:
            self.reason = "max-wall-time"
        if self.world_size == 1:
            return self.reason is not None
        flag = torch.tensor([0.0 if self.reason is None else 1.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            self.reason = self.reason or "another rank's stop request"
            return True
        return False

    def restore(self) -> None:
        """Give the signals back (training ran inside a longer-lived process)."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


def exit_preempted(reason: str | None, num_updates: int, checkpoint_cfg, is_main: bool) -> None:
    """After the checkpoint is saved on every rank: leave the process group, exit PREEMPTED_EXIT_CODE."""
    if is_main:
        c = checkpoint_cfg
        saved = "no checkpoint saved (--no-save)" if c.no_save else f"checkpoint saved in {c.save_dir}"
        print(f"bigseq | stopped early ({reason}) after update {num_updates}: {saved}; exit code "
              f"{PREEMPTED_EXIT_CODE}, run the same command again to resume", flush=True)
    shutdown()
    raise SystemExit(PREEMPTED_EXIT_CODE)
