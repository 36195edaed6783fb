"""Process-group set-up for every way bigseq is started.

`bigseq train` alone, `deepspeed launch/train.py`, `torchrun` and SLURM's
`srun` all end here: read rank/world size from the environment (filling the
single-process defaults) and start torch.distributed through DeepSpeed, with
gloo on CPU and nccl on GPUs.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import torch

from bigseq.distributed import shm_allreduce
from bigseq.distributed.build_locks import check_build_locks, pin_ninja
from bigseq.distributed.hostfile import check_deepspeed_hostfile
from bigseq.errors import BigseqError

DEFAULT_INIT_TIMEOUT_S = 600
_joined_process_group = False  # see exit_process


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _int_var(name: str) -> int:
    value = os.environ[name]
    if not value.strip().isdigit():
        raise BigseqError(f"{name}={value!r} is not a non-negative integer; fix or unset it in the launch script")
    return int(value)


def _check_slurm_env(env) -> None:
    """srun sets SLURM_PROCID and SLURM_NTASKS together; one without the other is a broken launch script."""
    if "SLURM_PROCID" in env and "SLURM_NTASKS" not in env:
        raise BigseqError(f"SLURM_PROCID={env['SLURM_PROCID']} is set but SLURM_NTASKS is not; start every rank "
                          f"with `srun` (which sets both), or set RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT yourself")
    if "SLURM_PROCID" in env and _int_var("SLURM_PROCID") >= _int_var("SLURM_NTASKS"):
        raise BigseqError(f"SLURM_PROCID={env['SLURM_PROCID']} is not below SLURM_NTASKS={env['SLURM_NTASKS']}; "
                          f"start the ranks with `srun` instead of setting these by hand")


def _check_torch_env(env) -> None:
    """RANK and WORLD_SIZE come as a pair (launchers set both); a partial set would hang or mis-rank."""
    if ("RANK" in env) != ("WORLD_SIZE" in env):
        have, missing = ("RANK", "WORLD_SIZE") if "RANK" in env else ("WORLD_SIZE", "RANK")
        raise BigseqError(f"{have} is set but {missing} is not; set both (and MASTER_ADDR/MASTER_PORT), or "
                          f"neither for a single-process run, or start with deepspeed/torchrun/srun")
    if "RANK" in env and _int_var("RANK") >= _int_var("WORLD_SIZE"):
        raise BigseqError(f"RANK={env['RANK']} is not below WORLD_SIZE={env['WORLD_SIZE']}; ranks count from 0")
    if "RANK" in env and int(env["WORLD_SIZE"]) > 1:
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
        if missing:
            raise BigseqError(f"{' and '.join(missing)} not set for a {env['WORLD_SIZE']}-rank run; export the "
                              f"address and a free port of the rank-0 host on every rank")


def _fill_env() -> None:
    """Map SLURM's variables when srun started us; default to one local process."""
    env = os.environ
    if "RANK" not in env and "WORLD_SIZE" not in env:
        _check_slurm_env(env)
    if "RANK" not in env and "WORLD_SIZE" not in env and "SLURM_PROCID" in env:
        env["RANK"], env["WORLD_SIZE"] = env["SLURM_PROCID"], env["SLURM_NTASKS"]
        env.setdefault("LOCAL_RANK", env.get("SLURM_LOCALID", "0"))
    if "RANK" not in env and "WORLD_SIZE" not in env:
        env.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    _check_torch_env(env)
    if env["WORLD_SIZE"] == "1":  # alone (also a one-task sbatch step): any local address will do
        env.setdefault("MASTER_ADDR", "127.0.0.1")
        env.setdefault("MASTER_PORT", str(_free_port()))
    env.setdefault("LOCAL_RANK", "0")


def init_timeout_s() -> float:
    """Bound on the rendezvous: BIGSEQ_DIST_INIT_TIMEOUT seconds (nodes of one job may start minutes apart)."""
    value = os.environ.get("BIGSEQ_DIST_INIT_TIMEOUT", str(DEFAULT_INIT_TIMEOUT_S))
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise BigseqError(f"BIGSEQ_DIST_INIT_TIMEOUT={value!r} is not a positive number of seconds; "
                          f"set it to e.g. {DEFAULT_INIT_TIMEOUT_S}")
    return seconds


@contextlib.contextmanager
def _rendezvous_watchdog(seconds: float):
    """Exit with one line if the process group is not up in time.

    torch keeps retrying an unreachable or wrong MASTER_ADDR:MASTER_PORT inside C++ for the whole
    collective timeout (DeepSpeed: 10 minutes, then a deep traceback), and a rank missing from the
    job makes the others wait just as long. A timer thread cannot raise into that blocked call, so
    it prints the error and ends the process; the launcher then stops the other ranks.
    """
    env = os.environ

    def give_up():
        print(f"bigseq: error: rank {env.get('RANK')} of {env.get('WORLD_SIZE')} could not join the process group "
              f"at MASTER_ADDR:MASTER_PORT={env.get('MASTER_ADDR')}:{env.get('MASTER_PORT')} within {seconds:g} s; "
              f"check that the address is the rank-0 host reachable from this node, that the port is free and "
              f"open, and that all ranks were started (BIGSEQ_DIST_INIT_TIMEOUT raises the limit)",
              file=sys.stderr, flush=True)
        os._exit(2)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def release_shared_memory_at_exit() -> None:
    """Unlink this rank's DeepSpeed shared-memory all-reduce buffer when the process exits.

    On the CPU accelerator DeepSpeed's communicator maps a 66 MiB /dev/shm buffer per rank,
    named deepspeed_allreduce_buffer_<uid>_<MASTER_ADDR>_<MASTER_PORT>_<rank>, and never
    unlinks it: every multi-process run would leak RAM until the machine thrashes. (Not
    loading the op at all was tried: ranks then sometimes abort in teardown at exit.)
    """
    if torch.cuda.is_available():
        return
    env = os.environ
    path = (f"/dev/shm/deepspeed_allreduce_buffer_{os.getuid()}_{env.get('MASTER_ADDR', '')}_"
            f"{env.get('MASTER_PORT', '')}_{env['RANK']}")

    def unlink() -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)

    atexit.register(unlink)


def _init_on_torchrun_agent_store(backend: str) -> None:
    """Join the process group through torchrun's agent store, one key prefix per restart.

    The agent serves one store for the whole job; after `--max-restarts` relaunches the
    workers, the gloo addresses the killed generation wrote are still there, and plain
    env:// init makes the new ranks dial those dead ports. TORCHELASTIC_RESTART_COUNT
    keeps the generations apart. DeepSpeed then adopts the initialized group.
    """
    from deepspeed.constants import default_pg_timeout
    env = os.environ
    store = torch.distributed.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False,
                                       timeout=default_pg_timeout)
    attempt = env.get("TORCHELASTIC_RESTART_COUNT", "0")
    per_attempt = torch.distributed.PrefixStore(f"bigseq/attempt_{attempt}", store)
    torch.distributed.init_process_group(backend, store=per_attempt, rank=int(env["RANK"]),
                                         world_size=int(env["WORLD_SIZE"]), timeout=default_pg_timeout)


def init_distributed() -> DistEnv:
    import deepspeed

    global _joined_process_group
    _fill_env()
    check_deepspeed_hostfile()
    check_build_locks()  # deepspeed.init_distributed builds the shared-memory op
    pin_ninja()
    shm_allreduce.set_local_size()  # under torchrun too, DeepSpeed maps its shared-memory all-reduce buffer
    release_shared_memory_at_exit()
    _joined_process_group = True
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        with _rendezvous_watchdog(init_timeout_s()):
            if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
                _init_on_torchrun_agent_store(backend)
            deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    return DistEnv(rank=torch.distributed.get_rank(), world_size=torch.distributed.get_world_size(),
                   local_rank=int(os.environ["LOCAL_RANK"]))


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shutdown() -> None:
    """Leave the process group: every rank reaches here before any of them exits."""
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def exit_process(code) -> NoReturn:
    """End a process that may have joined a process group, skipping interpreter finalization.

    Gloo's worker threads free finished collectives on their own, and destroy_process_group()
    does not stop them. The last one freed can hold the only reference to a Python tensor
    (DeepSpeed drops handles of asynchronous collectives): its destructor then waits for the
    GIL, and if the interpreter is finalizing by then, Python ends the thread inside a
    noexcept destructor and the whole process aborts with "terminate called without an
    active exception" (pytorch/pytorch#190489). Exit handlers run and output is flushed
    first, with those threads still able to finish; only the finalization they race is skipped.
    """
    if code is None:
        code = 0
    elif not isinstance(code, int):  # SystemExit("message") convention: print it, exit 1
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()  # logging.shutdown, the /dev/shm unlink above, libraries' own handlers
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def run_entry_point(main: Callable[[], int | None]) -> NoReturn:
    """`raise SystemExit(main())` for commands that train: same exit codes, no abort at exit."""
    try:
        code = main()
    except SystemExit as e:
        code = e.code
    except BaseException:  # noqa: BLE001 - print it as Python would, then exit 1 the same safe way
        traceback.print_exc()
        code = 1
    if _joined_process_group:
        exit_process(code)
    raise SystemExit(code)

