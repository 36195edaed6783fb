"""Optimizer base: a registered name + config dataclass -> a plain torch optimizer.

``build`` returns the torch optimizer itself (not a wrapper) because DeepSpeed's
ZeRO recognises the exact torch classes (``torch.optim.AdamW`` ...) and wraps
them in its own partitioned optimizer.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch


class BaseOptimizer:
    @classmethod
    def build(cls, cfg, params: Iterable, *, lr: float) -> torch.optim.Optimizer:
        raise NotImplementedError

    @classmethod
    def cpu_offload_kwargs(cls, cfg) -> dict[str, Any] | None:
        """Keyword arguments for DeepSpeedCPUAdam (besides lr), or None if this optimizer cannot be offloaded."""
        return None


def materialize_params(params: Iterable) -> list:
    """A list of tensors or of param-group dicts (a generator can only be read once)."""
    out = []
    for item in params:
        if isinstance(item, dict):
            item = {**item, "params": list(item["params"])}
        out.append(item)
    return out


def _tensors(params: list) -> Iterable[torch.Tensor]:
    for item in params:
        group = item["params"] if isinstance(item, dict) else [item]
        for p in group:
            yield p[1] if isinstance(p, tuple) else p  # (name, tensor) pairs are accepted too


def _fused_devices() -> set[str]:
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
        return set(_get_fused_kernels_supported_devices())
    except ImportError:
        return {"cpu", "cuda"}


def fast_impl_kwargs(params: list) -> dict[str, bool]:
    """``fused=True`` when torch has a fused kernel for every parameter (CPU and CUDA do):
    one kernel over all tensors, several times faster than the per-tensor loop and
    equal to it to rounding. Otherwise torch's own default (foreach on CUDA)."""
    tensors = list(_tensors(params))
    devices = _fused_devices()
    if tensors and all(t.is_floating_point() and t.device.type in devices for t in tensors) \
            and len({t.device for t in tensors}) == 1:
        return {"fused": True}
    return {}
