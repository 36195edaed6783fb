"""--sequence-parallel-size P: DeepSpeed-Ulysses sequence parallelism.

Ranks form contiguous groups of P (DeepSpeed's ``parallel_state_sp``): the P ranks
of a group read the same samples, each a T/P slice of every row, and are one
data-parallel replica, so the data-parallel degree is world / P while ZeRO
partitions over all ranks. In attention each rank trades its sequence slice of all
heads for the whole sequence of H/P heads (an all-to-all), attends, and trades
back: attention is the only layer that mixes positions, so nothing else changes.
The swap goes through ``SelfAttention.core_attention``; the model never sees
DeepSpeed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bigseq.errors import BigseqError
from bigseq.models.family import get_family


@dataclass(frozen=True)
class SequenceParallel:
    size: int
    rank: int
    """This rank's place in its group: it holds tokens [rank * T/P, (rank + 1) * T/P) of each row."""
    group: object = None
    """The torch process group of the P ranks (None when P = 1)."""

    @property
    def enabled(self) -> bool:
        return self.size > 1


def check_config(cfg) -> None:
    """The flag against the model, task and other parallelism: one line each, before any process starts."""
    p = cfg.distributed.sequence_parallel_size
    if p < 1:
        raise BigseqError(f"--sequence-parallel-size must be >= 1, got {p}")
    if p == 1:
        return
    if cfg.distributed.pipeline_parallel_size > 1:
        raise BigseqError(f"--sequence-parallel-size {p} does not combine with --pipeline-parallel-size "
                          f"{cfg.distributed.pipeline_parallel_size}; use one of them")
    if cfg.names.get("task") != "language_modeling":
        raise BigseqError(f"--sequence-parallel-size {p} works with --task language_modeling, not "
                          f"{cfg.names.get('task')}; drop --sequence-parallel-size")
    family = get_family(cfg.names["model"])
    dims = family.dims(cfg.model) if family.dims else None
    if dims is None:
        raise BigseqError(f"--sequence-parallel-size {p}: model {cfg.names['model']} does not report its head "
                          f"counts; drop --sequence-parallel-size")
    heads, kv_heads = dims.heads, dims.kv_heads
    if heads % p:
        raise BigseqError(f"--decoder-attention-heads {heads} is not divisible by --sequence-parallel-size {p}; "
                          f"each rank attends with heads / P heads")
    if kv_heads % p:  # also refuses kv_heads < P, which would leave a rank without a key/value head
        raise BigseqError(f"--decoder-kv-heads {kv_heads} is not divisible by --sequence-parallel-size {p}; "
                          f"use a P that divides the key/value head count")
    if getattr(cfg.model, "rope_scaling", None) == "longrope":  # it picks its factors by the longest position held
        raise BigseqError(f"--rope-scaling longrope does not work with --sequence-parallel-size {p} (each rank "
                          f"holds a slice of the positions); drop one of them")
    length = cfg.task.tokens_per_sample
    if length % p:
        raise BigseqError(f"--tokens-per-sample {length} is not divisible by --sequence-parallel-size {p}; "
                          f"use a multiple of {p}")


class _UlyssesState:
    """DeepSpeed's ``parallel_state_sp`` with the tensor-parallel degree of 1 it does not state.

    Without it DeepSpeed falls back to get_model_parallel_world_size, which parallel_state_sp aliases to
    the SP degree: every checkpoint would record SP as tensor parallelism (ds_to_universal then looks for P
    model-state files) and loading a universal checkpoint would fail on the missing function.
    """

    def __init__(self, state):
        self._state = state

    def __getattr__(self, name: str):  # only for names not found on the instance or the class
        if name == "_state":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self._state, name)

    @staticmethod
    def get_tensor_model_parallel_world_size() -> int:
        return 1

    @staticmethod
    def get_tensor_model_parallel_rank() -> int:
        return 0


def init_groups(size: int, rank: int, world_size: int) -> tuple[SequenceParallel, object]:
    """Collective: build DeepSpeed's sequence-parallel groups. -> (this rank's place, the mpu for
    deepspeed.initialize / zero.Init, None without SP)."""
    if world_size % size:
        raise BigseqError(f"--sequence-parallel-size {size} does not divide the world size {world_size}; "
                          f"launch a multiple of {size} processes")
    if size == 1:
        return SequenceParallel(1, 0), None
    from deepspeed.runtime.sequence_parallel import parallel_state_sp
    from deepspeed.utils import groups

    parallel_state_sp.initialize_sequence_parallel(size)
    mpu = _UlyssesState(parallel_state_sp)
    groups.mpu = mpu  # now, not only in deepspeed.initialize: DistributedAttention reads the SP rank from it
    return SequenceParallel(size, mpu.get_sequence_parallel_rank(), mpu.get_sequence_parallel_group()), mpu


def ulysses_attention(group) -> object:
    """A ``core_attention`` for (B, T/P, H, D) slices: all-to-all to (B, T, H/P, D), attend, all-to-all back.
    cu_seqlens (document boundaries) pass through as given: over the whole sequence, as the attention sees it."""
    from deepspeed.sequence.layer import DistributedAttention

    from bigseq.modules.attention import core_attention

    ulysses = DistributedAttention(core_attention, group, scatter_idx=2, gather_idx=1)

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **options) -> torch.Tensor:
        if "key_padding_mask" in options:
            raise ValueError("sequence parallel attention takes no key_padding_mask (causal LM rows are right padded)")
        return ulysses(q, k, v, 0, None, **options)  # batch_dim_idx=0: the (B, T, H, D) layout

    return attend


def shard_attention(model: torch.nn.Module, sp: SequenceParallel) -> int:
    """Swap every attention's core for the Ulysses one. -> how many were swapped."""
    attend = ulysses_attention(sp.group)
    swapped = 0
    for module in model.modules():
        if hasattr(module, "core_attention"):
            module.core_attention = attend
            swapped += 1
    if swapped == 0:
        raise BigseqError(f"--sequence-parallel-size {sp.size}: model {type(model).__name__} exposes no "
                          f"core_attention to shard; drop --sequence-parallel-size")
    return swapped
