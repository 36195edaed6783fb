"""Parameter init as a function of (seed, parameter name) only.

Every parameter is filled from its own ``torch.Generator`` seeded by a stable
hash of ``f"{seed}:{name}"``, so the weights do not depend on the order in
which modules are constructed: a pipeline stage that builds only layers 4-7,
or a layer built alone, gets the same tensors as the full model. Pass
``prefix`` when a module is built outside its model (``prefix="layers.5."``).
"""

from __future__ import annotations

import fnmatch
import hashlib
from typing import Callable, Sequence

import torch
import torch.nn as nn

# deepspeed.zero.Init replaces torch.empty/zeros/ones while it builds a model, with versions that put new
# tensors on the accelerator in the training dtype; init values are drawn on the CPU in fp32 whatever the
# context (a CPU generator cannot fill a CUDA tensor), so they use the functions as they were at import
_empty, _zeros, _ones = torch.empty, torch.zeros, torch.ones

# (shape, generator) -> fp32 CPU tensor of that shape
Initializer = Callable[[tuple[int, ...], torch.Generator], torch.Tensor]
# (fnmatch pattern over the full parameter name, initializer); the first match wins
InitRule = tuple[str, Initializer]


def normal(std: float) -> Initializer:
    def init(shape, gen):
        return _empty(shape, dtype=torch.float32, device="cpu").normal_(0.0, std, generator=gen)
    return init


def zeros() -> Initializer:
    return lambda shape, gen: _zeros(shape, dtype=torch.float32, device="cpu")


def ones() -> Initializer:
    return lambda shape, gen: _ones(shape, dtype=torch.float32, device="cpu")


def stable_seed(seed: int, name: str) -> int:
    """A 63-bit seed from (seed, name), identical across processes and Python runs."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def init_value(name: str, shape: tuple[int, ...], seed: int, rules: Sequence[InitRule]) -> torch.Tensor:
    """The fp32 value parameter ``name`` gets for ``seed`` under ``rules``."""
    for pattern, initializer in rules:
        if fnmatch.fnmatchcase(name, pattern):
            gen = torch.Generator(device="cpu")
            gen.manual_seed(stable_seed(seed, name))
            return initializer(tuple(shape), gen)
    raise ValueError(f"no init rule matches parameter '{name}'")


@torch.no_grad()
def init_params_by_name(module: nn.Module, seed: int, rules: Sequence[InitRule], prefix: str = "") -> None:
    """Fill every parameter of ``module`` from (seed, prefix + its name).

    Parameters on the meta device are skipped (nothing to fill). Tied
    parameters are visited once, under their first name.
    """
    for name, param in module.named_parameters():
        if param.is_meta:
            continue
        sharded = hasattr(param, "ds_tensor")  # built under ZeRO-3 (deepspeed.zero.Init)
        value = init_value(prefix + name, tuple(param.ds_shape if sharded else param.shape), seed, rules)
        if sharded:
            _fill_shard(param, value)
        else:
            param.copy_(value.to(device=param.device, dtype=param.dtype))


# torch.nn.init's in-place initializers, which modules' own reset_parameters call (the list
# transformers' no_init_weights silences too)
_TORCH_INITIALIZERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                       "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                       "sparse_")


def _leave_as_is(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return tensor


def construct_without_default_init(factory: Callable[[], nn.Module]) -> nn.Module:
    """``factory()`` with torch.nn.init's initializers made no-ops while it runs, for models that fill
    every parameter afterwards (``init_params_by_name``): PyTorch's per-module default init is wasted
    work there, and the slowest part of building a large model on CPU
    (benchmarks/results/model_build.md). Parameters are left as torch.empty made them; buffers,
    which no initializer touches, keep their values. Works inside ``deepspeed.zero.Init`` (each
    module is still sharded as it is made) and on the meta device. Not thread-safe: the functions
    are swapped module-wide while `factory` runs.
    """
    saved = {name: getattr(nn.init, name) for name in _TORCH_INITIALIZERS}
    for name in saved:
        setattr(nn.init, name, _leave_as_is)
    try:
        return factory()
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def _fill_shard(param: nn.Parameter, full_value: torch.Tensor) -> None:
    """Write this rank's slice of a ZeRO-3 sharded parameter from its full value, with no communication.

    DeepSpeed's layout: the flattened parameter (ds_numel elements) padded to world x
    slice size, rank r holding [r * size, (r + 1) * size) in ds_tensor. Values come from
    (seed, name) alone, so every rank's slice matches the unsharded model's.
    """
    shard = param.ds_tensor
    size = shard.ds_numel
    start = size * torch.distributed.get_rank(group=param.ds_process_group)
    count = max(0, min(size, param.ds_numel - start))
    if count:
        flat = full_value.reshape(-1).narrow(0, start, count)
        shard.narrow(0, 0, count).copy_(flat.to(device=shard.device, dtype=shard.dtype))
