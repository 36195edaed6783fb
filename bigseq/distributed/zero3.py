"""ZeRO-3 model construction: no rank ever holds the whole fp32 model.

Under ``deepspeed.zero.Init`` every module's parameters are split across the
data-parallel ranks as soon as the module is built; a parameter then keeps an
empty ``.data`` and its slice in ``.ds_tensor``. bigseq's initializers derive a
parameter's value from (seed, name) alone, so each rank can write its own slice
without any communication (bigseq.modules.init does so), and the result equals
the unsharded model's.
"""

from __future__ import annotations

import torch


def is_partitioned(param: torch.Tensor) -> bool:
    return hasattr(param, "ds_tensor")


def full_numel(param: torch.Tensor) -> int:
    return int(param.ds_numel) if is_partitioned(param) else param.numel()


def init_context(ds_config: dict, mpu=None):
    """``deepspeed.zero.Init`` for ``ds_config`` (a ZeRO-3 config): build the model inside it."""
    import deepspeed

    offload = ds_config.get("zero_optimization", {}).get("offload_param", {}).get("device", "none")
    return deepspeed.zero.Init(config_dict_or_path=ds_config, remote_device=None if offload == "none" else offload,
                               mpu=mpu)


def resident_numel(module: torch.nn.Module) -> int:
    """Parameter elements this rank holds (its ZeRO-3 slices, or whole parameters)."""
    return sum(p.ds_tensor.ds_numel if is_partitioned(p) else p.numel() for p in module.parameters())
