"""ZeRO-3 model construction: no rank ever holds the whole fp32 model.

Under ``deepspeed.zero.Init`` every module's parameters are split across the
data-parallel ranks as soon as the module is built; a parameter then keeps an
empty ``.data`` and its slice in ``.ds_tensor``. bigseq's initializers derive a
parameter's value from (seed, name) alone, so each rank can write its own slice
without any communication, and the result equals the unsharded model's.
"""

from __future__ import annotations

import torch


def is_partitioned(param: torch.Tensor) -> bool:
    return hasattr(param, "ds_tensor")


def full_shape(param: torch.Tensor) -> tuple[int, ...]:
    return tuple(param.ds_shape) if is_partitioned(param) else tuple(param.shape)


def full_numel(param: torch.Tensor) -> int:
    return int(param.ds_numel) if is_partitioned(param) else param.numel()


@torch.no_grad()
def fill_partition(param: torch.Tensor, full_value: torch.Tensor) -> None:
    """Copy this rank's slice of ``full_value`` (the whole parameter) into its ZeRO-3 partition.

    Same layout as DeepSpeed's own partitioning: the flattened parameter, padded to
    world x partition size, rank r holding [r * size, (r + 1) * size).
    """
    part = param.ds_tensor
    size = part.ds_numel
    start = size * torch.distributed.get_rank(group=param.ds_process_group)
    count = max(0, min(size, param.ds_numel - start))
    if count:
        flat = full_value.reshape(-1).narrow(0, start, count)
        part.narrow(0, 0, count).copy_(flat.to(device=part.device, dtype=part.dtype))


def init_context(ds_config: dict):
    """``deepspeed.zero.Init`` for ``ds_config`` (a ZeRO-3 config): build the model inside it."""
    import deepspeed

    offload = ds_config.get("zero_optimization", {}).get("offload_param", {}).get("device", "none")
    return deepspeed.zero.Init(config_dict_or_path=ds_config, remote_device=None if offload == "none" else offload)


def resident_numel(module: torch.nn.Module) -> int:
    """Parameter elements this rank holds (its ZeRO-3 slices, or whole parameters)."""
    return sum(p.ds_tensor.ds_numel if is_partitioned(p) else p.numel() for p in module.parameters())
