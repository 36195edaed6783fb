"""torchrun worker: ZeRO's all-gather through the shared-memory kernel gives gloo's bytes, special values included.

Each rank's part holds -0.0, +0.0, infinities, a NaN, denormals and random values; the part is
gathered as a separate tensor, as a view of its own slot in the output (as ZeRO-1/2 pass it) and
as a view of another rank's slot, in fp32 and bf16, and compared bit for bit with torch.distributed's
gloo all-gather; every one of those gathers must have taken the kernel's route.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from bigseq.distributed import name_accelerator, shm_allreduce  # noqa: E402


def part(rank: int, dtype: torch.dtype) -> torch.Tensor:
    special = torch.tensor([-0.0, 0.0, float("inf"), -float("inf"), float("nan"), 1e-45, -1e-40, 3.0])
    rand = torch.randn(1003, generator=torch.Generator().manual_seed(rank)) * 10.0 ** (rank - 1)
    return torch.cat([special.roll(rank), rand]).to(dtype)


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32 if t.dtype == torch.float32 else torch.int16)


def main() -> None:
    shm_allreduce.set_local_size()
    name_accelerator()
    import deepspeed
    import deepspeed.comm as ds_dist

    deepspeed.init_distributed(dist_backend="gloo")
    assert shm_allreduce.route_all_reduce(), "the shared-memory kernel was not routed"
    through_kernel = []  # counts the gathers that took the kernel's route (a gloo fallback would pass unseen)
    gather_by_sum = shm_allreduce._gather_by_sum
    shm_allreduce._gather_by_sum = lambda *args: (through_kernel.append(1), gather_by_sum(*args))
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    for dtype in (torch.float32, torch.bfloat16):
        mine = part(rank, dtype)
        n = mine.numel()
        expected = torch.empty(world * n, dtype=dtype)
        torch.distributed.all_gather_into_tensor(expected, mine)  # gloo, not routed
        separate = torch.full((world * n,), 7.0, dtype=dtype)
        ds_dist.all_gather_into_tensor(separate, mine)
        in_place = torch.full((world * n,), 7.0, dtype=dtype)
        in_place[rank * n:(rank + 1) * n] = mine
        ds_dist.all_gather_into_tensor(in_place, in_place[rank * n:(rank + 1) * n])
        elsewhere = torch.full((world * n,), 7.0, dtype=dtype)  # the part in another rank's slot
        other = (rank + 1) % world
        elsewhere[other * n:(other + 1) * n] = mine
        ds_dist.all_gather_into_tensor(elsewhere, elsewhere[other * n:(other + 1) * n])
        for name, got in (("separate", separate), ("in place", in_place), ("elsewhere", elsewhere)):
            assert torch.equal(bits(got), bits(expected)), f"{dtype} {name}: not gloo's bytes"
    assert len(through_kernel) == 6, f"{len(through_kernel)} of 6 gathers went through the shared-memory kernel"
    torch.distributed.barrier()
    if rank == 0:
        print("shm all-gather: bit-identical to gloo", flush=True)


if __name__ == "__main__":
    main()
