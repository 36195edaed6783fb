"""Process-group set-up for every way bigseq is started.

`bigseq train` alone, `deepspeed launch/train.py`, `torchrun` and SLURM's
`srun` all end here: read rank/world size from the environment (filling the
single-process defaults) and start torch.distributed through DeepSpeed, with
gloo on CPU and nccl on GPUs.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch


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


def _fill_env() -> None:
    """Map SLURM's variables when srun started us; default to one local process."""
    env = os.environ
    if "RANK" not in env and "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        env["RANK"], env["WORLD_SIZE"] = env["SLURM_PROCID"], env["SLURM_NTASKS"]
        env.setdefault("LOCAL_RANK", env.get("SLURM_LOCALID", "0"))
    if "RANK" not in env:
        env.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
        env.setdefault("MASTER_ADDR", "127.0.0.1")
        env.setdefault("MASTER_PORT", str(_free_port()))
    env.setdefault("LOCAL_RANK", "0")


def skip_shared_memory_allreduce() -> None:
    """Keep DeepSpeed's CPU communicator from loading its shared-memory all-reduce op.

    On the CPU accelerator DeepSpeed JIT-compiles that op (about a minute, again for
    every new environment path) and each rank maps a 66 MiB /dev/shm buffer that is
    never unlinked: every multi-process run leaks RAM until the machine thrashes. It
    only serves `inference_all_reduce`, which training never calls; gloo does the rest.
    """
    if torch.cuda.is_available():
        return
    import deepspeed.ops
    from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder

    deepspeed.ops.__compatible_ops__[ShareMemCommBuilder.NAME] = False


def init_distributed() -> DistEnv:
    import deepspeed

    _fill_env()
    skip_shared_memory_allreduce()
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
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
    """Leave the process group cleanly: exiting with gloo's threads alive aborts the process."""
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
