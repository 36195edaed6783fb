"""Tensor parallelism through DeepSpeed's AutoTP, with bigseq's own partition rules.

AutoTP shards the layers its ``partition_config`` names and leaves every other module
whole; the rules below name bigseq's attention and feed-forward projections (Megatron's
split: q/k/v and gate/up by output columns, the output projections by input rows, so
each block needs one all-reduce). The embedding and the output projection stay
replicated: the output projection is read as a weight (``output_logits``), not called,
so a sharded one would give every rank a slice of the vocabulary.

Layout (DeepSpeed's mesh): the T ranks of a tensor-parallel group are consecutive, so
rank r is data-parallel rank r // T and tensor-parallel rank r % T; the ranks of a group
read the same samples and compute the same loss.
"""

from __future__ import annotations

import re

from bigseq.errors import BigseqError
from bigseq.models.family import get_family

# regexes over parameter names (DeepSpeed matches them with re.match)
COLUMN = [r".*\.attn\.[qkv]_proj\.weight$", r".*\.ffn\.(gate|up)_proj\.weight$"]
ROW = [r".*\.attn\.out_proj\.weight$", r".*\.ffn\.down_proj\.weight$"]
# per-head q/k norms see only this rank's heads: their gradients are partial sums over the group
REPLICATED_SUMMED = [r".*\.attn\.[qk]_norm\.weight$"]

# flags that build their own process layout and cannot share the world with AutoTP's mesh
_EXCLUSIVE = {"pipeline_parallel_size": "--pipeline-parallel-size",
              "sequence_parallel_size": "--sequence-parallel-size"}


def is_split(name: str) -> bool:
    """Does AutoTP split this parameter under bigseq's rules (the estimate counts them)?"""
    return any(re.match(pattern, name) for pattern in COLUMN + ROW)


def ds_section(size: int) -> dict:
    """The DeepSpeed config's "tensor_parallel" section: AutoTP of `size` with only bigseq's rules."""
    return {"autotp_size": size, "partition_config": {
        "use_default_specs": False,
        "layer_specs": [{"patterns": COLUMN, "partition_type": "column"},
                        {"patterns": ROW, "partition_type": "row"},
                        {"patterns": REPLICATED_SUMMED, "partition_type": "skip", "grad_allreduce": True}]}}


def check_config(cfg) -> None:
    """Each reason --tensor-parallel-size T cannot shard this model, as one line (no process group needed)."""
    size = cfg.distributed.tensor_parallel_size
    if size < 1:
        raise BigseqError(f"--tensor-parallel-size must be >= 1, got {size}")
    if size == 1:
        return
    for field, flag in _EXCLUSIVE.items():
        if getattr(cfg.distributed, field, 1) > 1:
            raise BigseqError(f"--tensor-parallel-size {size} does not combine with {flag}; use one of them")
    if cfg.names["model"] != "transformer_lm":
        raise BigseqError(f"--tensor-parallel-size works with transformer_lm architectures, not "
                          f"--arch {cfg.names['arch']} ({cfg.names['model']})")
    dims = get_family("transformer_lm").dims(cfg.model)
    for what, flag, value in (("attention heads", "--decoder-attention-heads", dims.heads),
                              ("KV heads", "--decoder-kv-heads", dims.kv_heads),
                              ("FFN width", "--decoder-ffn-embed-dim", dims.ffn_dim)):
        if value % size:
            raise BigseqError(f"--tensor-parallel-size {size} must divide the {what} ({flag} {value}): "
                              f"each rank holds an equal slice")
    if getattr(cfg.model, "qk_norm", "none") == "full":
        raise BigseqError(f"--qk-norm full normalizes over all heads, which --tensor-parallel-size {size} "
                          f"splits across ranks; use --qk-norm head or no tensor parallelism")


def check_world(size: int, world_size: int) -> None:
    if world_size % size:
        raise BigseqError(f"--tensor-parallel-size {size} does not divide the world size {world_size}; "
                          f"launch a multiple of {size} processes")


def grad_norm(engine) -> float:
    """The whole model's gradient norm from a tensor-parallel group's ranks (fp32 without ZeRO, where bigseq
    computes it): each rank's shards once, the replicated parameters once (from the group's first rank)."""
    import torch
    import torch.distributed as dist
    from deepspeed.runtime.utils import is_model_parallel_parameter

    first = engine.mpu.get_model_parallel_rank() == 0
    sq = torch.zeros((), dtype=torch.float64)
    for p in engine.module.parameters():
        if p.grad is not None and (first or is_model_parallel_parameter(p)):
            sq += p.grad.detach().double().pow(2).sum()
    dist.all_reduce(sq, group=engine.mpu.get_model_parallel_group())
    return float(sq.sqrt())
