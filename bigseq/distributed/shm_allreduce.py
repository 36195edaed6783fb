"""Gradient all-reduces (and ZeRO's parameter all-gathers) through DeepSpeed's shared-memory kernel when every
rank is on this machine (CPU).

On the CPU accelerator DeepSpeed reduces ZeRO's gradients with gloo, which sends them through
loopback TCP: 15 ms for 5.2M fp32 values between two ranks on one 2-core machine, where DeepSpeed's
own shared-memory all-reduce (the op its CPU inference uses, ``inference_all_reduce``) takes 4.6 ms.
Every rank then spends that difference on each update. This routes the all-reduces that kernel can
do (synchronous sums of contiguous fp32/bf16 CPU tensors over all ranks) to it and leaves every
other collective to gloo. Both ranks make the same choice, since the tensors DeepSpeed reduces have
the same dtype, size and layout on every rank. For two ranks the sum is the same as gloo's, bit for
bit (one addition); for more, the kernel adds in rank order, also deterministically.

ZeRO-1/2 then all-gather the updated parameter partitions (gloo: 10 ms for 5.2M fp32 values per
update here). The same kernel does that as a sum: each rank fills the partitions that are not its
own with -0.0 and all ranks add. -0.0 is the additive identity in IEEE 754 (x + -0.0 = x for every
x, +0.0 and -0.0 included; +0.0 padding would turn -0.0 into +0.0), so every partition arrives bit
for bit, in any summation order.

DeepSpeed maps the shared buffer only when LOCAL_SIZE equals the world size (its own launcher sets
it); ``set_local_size`` gives torchrun's ranks the same, before the process group starts.

BIGSEQ_SHM_ALLREDUCE=0 turns the routing off.
"""

from __future__ import annotations

import os

import torch

from bigseq.errors import BigseqError


def set_local_size(env=os.environ) -> None:
    """LOCAL_SIZE from torchrun's LOCAL_WORLD_SIZE, which DeepSpeed's shared-memory op reads."""
    if "LOCAL_SIZE" not in env and "LOCAL_WORLD_SIZE" in env:
        env["LOCAL_SIZE"] = env["LOCAL_WORLD_SIZE"]


def enabled(env=os.environ) -> bool:
    switch, world = env.get("BIGSEQ_SHM_ALLREDUCE", "1"), env.get("WORLD_SIZE", "1")
    if switch not in ("0", "1"):
        raise BigseqError(f"BIGSEQ_SHM_ALLREDUCE={switch!r}: use 1 (shared memory where every rank is on this "
                          f"machine, the default) or 0 (gloo)")
    return switch == "1" and world != "1" and env.get("LOCAL_SIZE") == world and not torch.cuda.is_available()


def is_routed() -> bool:
    """Whether this process's DeepSpeed all-reduces go through the shared-memory kernel."""
    import deepspeed.comm.comm as ds_comm

    return getattr(getattr(ds_comm.cdb, "all_reduce", None), "bigseq_shm", False)


def route_all_reduce() -> bool:
    """Send DeepSpeed's eligible all-reduces to the shared-memory kernel; False where it cannot be used."""
    import deepspeed.comm.comm as ds_comm

    backend = ds_comm.cdb
    kernel_level = getattr(backend, "shm_vector_kernel_level", 0)  # the kernel's ISA: 1 fp32, 2 bf16 too
    ops = getattr(torch.ops, "deepspeed", None)
    if not enabled() or backend is None or ops is None or not hasattr(ops, "inference_all_reduce_") \
            or kernel_level < 1 or is_routed():
        return False
    dtypes = (torch.float32, torch.bfloat16) if kernel_level >= 2 else (torch.float32,)
    world = torch.distributed.get_world_size()
    gloo_all_reduce = backend.all_reduce

    def all_reduce(tensor, op=torch.distributed.ReduceOp.SUM, group=None, async_op=False):
        if (not async_op and tensor.device.type == "cpu" and tensor.dtype in dtypes and tensor.is_contiguous()
                and backend._reduce_op(op) == torch.distributed.ReduceOp.SUM
                and (group is None or torch.distributed.get_world_size(group) == world)):
            ops.inference_all_reduce_(tensor)
            return None
        return gloo_all_reduce(tensor, op=op, group=group, async_op=async_op)

    gloo_all_gather = backend.all_gather_into_tensor

    def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
        if (not async_op and _gatherable(output_tensor, input_tensor, dtypes)
                and (group is None or torch.distributed.get_world_size(group) == world)):
            _gather_by_sum(output_tensor, input_tensor, torch.distributed.get_rank(), ops.inference_all_reduce_)
            return None
        return gloo_all_gather(output_tensor=output_tensor, input_tensor=input_tensor, group=group,
                               async_op=async_op)

    all_reduce.bigseq_shm = True
    backend.all_reduce = all_reduce
    backend.all_gather_into_tensor = all_gather_into_tensor
    return True


def _gatherable(output: torch.Tensor, part: torch.Tensor, dtypes) -> bool:
    """Same dtype, contiguous CPU tensors, output `world` times the part: facts every rank shares, so all
    ranks take the same route (one rank in the kernel and one in gloo would wait on each other forever)."""
    return (output.device.type == part.device.type == "cpu" and output.dtype == part.dtype
            and output.dtype in dtypes and output.is_contiguous() and part.is_contiguous()
            and output.numel() == torch.distributed.get_world_size() * part.numel())


def _gather_by_sum(output: torch.Tensor, part: torch.Tensor, rank: int, all_reduce_) -> None:
    """All-gather as an all-reduce: this rank's slot holds its part, every other slot -0.0."""
    flat, n = output.view(-1), part.numel()
    mine = flat[rank * n:(rank + 1) * n]
    if mine.data_ptr() != part.data_ptr():  # ZeRO passes its partition as that slot itself: nothing to copy
        if part.untyped_storage().data_ptr() == output.untyped_storage().data_ptr():
            part = part.clone()  # elsewhere in the output: the fills below would overwrite it
        mine.copy_(part.view(-1))
    flat[:rank * n].fill_(-0.0)
    flat[(rank + 1) * n:].fill_(-0.0)
    all_reduce_(output)
