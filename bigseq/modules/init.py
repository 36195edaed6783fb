"""Parameter init as a function of (seed, parameter name) only.

Every parameter is filled from its own ``torch.Generator`` seeded by a stable
hash of ``f"{seed}:{name}"``, so the weights do not depend on the order in
which modules are constructed: a pipeline stage that builds only layers 4-7,
or a layer built alone, gets the same tensors as the full model. Pass
``prefix`` when a module is built outside its model (``prefix="layers.5."``).

A parameter is drawn in blocks of ``INIT_BLOCK`` elements of its flattened value,
block k from a generator of its own seeded from (seed, name, k), so any slice of a
parameter can be drawn without the rest: a ZeRO-3 rank draws about 1/world of the
model's values instead of all of them (benchmarks/results/model_build.md), and still
gets the values of the unsharded model.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
from typing import Callable, Sequence

import torch
import torch.nn as nn

# deepspeed.zero.Init replaces torch.empty/zeros/ones while it builds a model, with versions that put new
# tensors on the accelerator in the training dtype; init values are drawn on the CPU in fp32 whatever the
# context (a CPU generator cannot fill a CUDA tensor), so they use the functions as they were at import
_empty, _zeros, _ones = torch.empty, torch.zeros, torch.ones

# (number of elements, generator) -> 1-D fp32 CPU tensor of that many elements, drawn independently of
# each other (a parameter is drawn block by block, so an initializer cannot depend on its shape)
Initializer = Callable[[int, torch.Generator], torch.Tensor]
# Elements per block: small enough that a rank's slice costs at most two partial blocks per parameter
# beyond its own elements, large enough that seeding a generator per block costs nothing measurable
INIT_BLOCK = 2**16
# (fnmatch pattern over the full parameter name, initializer); the first match wins
InitRule = tuple[str, Initializer]


def normal(std: float) -> Initializer:
    def init(numel, gen):
        return _empty(numel, dtype=torch.float32, device="cpu").normal_(0.0, std, generator=gen)
    return init


def zeros() -> Initializer:
    return lambda numel, gen: _zeros(numel, dtype=torch.float32, device="cpu")


def ones() -> Initializer:
    return lambda numel, gen: _ones(numel, dtype=torch.float32, device="cpu")


def stable_seed(seed: int, name: str) -> int:
    """A 63-bit seed from (seed, name), identical across processes and Python runs."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def initializer_for(name: str, rules: Sequence[InitRule]) -> Initializer:
    """The initializer of the first rule whose pattern matches ``name``."""
    for pattern, initializer in rules:
        if fnmatch.fnmatchcase(name, pattern):
            return initializer
    raise ValueError(f"no init rule matches parameter '{name}'")


def init_slice(name: str, numel: int, start: int, count: int, seed: int, rules: Sequence[InitRule]) -> torch.Tensor:
    """Elements [start, start + count) of the flattened fp32 value of parameter ``name`` (``numel``
    elements in all), drawing only the blocks they lie in."""
    if start < 0 or count < 0 or start + count > numel:
        raise ValueError(f"slice [{start}, {start + count}) is outside parameter '{name}' of {numel} elements")
    initializer = initializer_for(name, rules)
    out = _empty(count, dtype=torch.float32, device="cpu")
    for block in range(start // INIT_BLOCK, (start + count - 1) // INIT_BLOCK + 1 if count else 0):
        lo, hi = block * INIT_BLOCK, min((block + 1) * INIT_BLOCK, numel)
        gen = torch.Generator(device="cpu")
        # block 0 keeps the parameter's own seed: a parameter of one block is drawn as a whole
        gen.manual_seed(stable_seed(seed, name if block == 0 else f"{name}#{block}"))
        values = initializer(hi - lo, gen)
        a, b = max(lo, start), min(hi, start + count)
        out[a - start:b - start] = values[a - lo:b - lo]
    return out


def init_value(name: str, shape: tuple[int, ...], seed: int, rules: Sequence[InitRule]) -> torch.Tensor:
    """The fp32 value parameter ``name`` gets for ``seed`` under ``rules``."""
    numel = math.prod(shape)
    return init_slice(name, numel, 0, numel, seed, rules).view(tuple(shape))


@torch.no_grad()
def init_params_by_name(module: nn.Module, seed: int, rules: Sequence[InitRule], prefix: str = "") -> None:
    """Fill every parameter of ``module`` from (seed, prefix + its name).

    Parameters on the meta device are skipped (nothing to fill). Tied
    parameters are visited once, under their first name.
    """
    for name, param in module.named_parameters():
        if param.is_meta:
            continue
        if hasattr(param, "ds_tensor"):  # built under ZeRO-3 (deepspeed.zero.Init)
            _fill_shard(param, prefix + name, seed, rules)
        else:
            value = init_value(prefix + name, tuple(param.shape), seed, rules)
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


def _fill_shard(param: nn.Parameter, name: str, seed: int, rules: Sequence[InitRule]) -> None:
    """Write this rank's slice of a ZeRO-3 sharded parameter, drawing only that slice, with no communication.

    DeepSpeed's layout: the flattened parameter (ds_numel elements) padded to world x
    slice size, rank r holding [r * size, (r + 1) * size) in ds_tensor. Values come from
    (seed, name) alone, so every rank's slice matches the unsharded model's.
    """
    shard = param.ds_tensor
    size = shard.ds_numel
    start = size * torch.distributed.get_rank(group=param.ds_process_group)
    count = max(0, min(size, param.ds_numel - start))
    if count:
        values = init_slice(name, param.ds_numel, start, count, seed, rules)
        shard.narrow(0, 0, count).copy_(values.to(device=shard.device, dtype=shard.dtype))


@torch.no_grad()
def zero_row(param: nn.Parameter, row: int) -> None:
    """Zero one row of a 2-D parameter (an embedding's padding row), whole or ZeRO-3 sharded: a sharded
    rank zeroes the part of the row its slice holds (the layout of ``_fill_shard``)."""
    if param.is_meta:
        return
    if not hasattr(param, "ds_tensor"):
        param[row].zero_()
        return
    width = param.ds_shape[-1]
    shard = param.ds_tensor
    start = shard.ds_numel * torch.distributed.get_rank(group=param.ds_process_group)
    lo, hi = max(row * width, start), min((row + 1) * width, start + shard.ds_numel, param.ds_numel)
    if lo < hi:
        shard.narrow(0, lo - start, hi - lo).zero_()
