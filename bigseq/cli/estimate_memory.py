"""`bigseq estimate-memory`: per-device memory of a run by ZeRO stage, before renting the devices."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bigseq.config import FlagParser, add_dataclass_args
from bigseq.distributed.memory_estimate import GIB, estimate, longest_sequence, model_shape
from bigseq.errors import BigseqError


@dataclass(kw_only=True)
class EstimateMemoryConfig:
    arch: str = "llama_7b"
    """Named architecture (built on the meta device: no memory, exact parameter count)."""
    vocab_size: int = 32000
    """Vocabulary size (the architectures take it from the data)."""
    zero_stage: int = 3
    """ZeRO stage of the planned run (the fit column covers all stages)."""
    world_size: int = 8
    """Devices (ZeRO shards the model states over all of them)."""
    sequence_parallel_size: int = 1
    """Devices that split each sequence (--sequence-parallel-size of bigseq train): activations divide by it."""
    tensor_parallel_size: int = 1
    """Devices that split each layer's projections (--tensor-parallel-size of bigseq train)."""
    mlp_chunks: int = 1
    """Slices the feed-forward block is tiled over (--mlp-chunks of bigseq train); 1: none."""
    micro_batch: int = 1
    """Sequences per device per forward pass."""
    tokens_per_sample: int = 4096
    """Sequence length."""
    precision: str = "bf16"
    """bf16, fp16 (mixed precision, Adam) or fp32."""
    offload_optimizer: str = "none"
    """none or cpu: Adam's state and the fp32 gradients in host memory."""
    device_memory: str = "80GiB"
    """Memory of one device, e.g. 80GiB, 40GB, 24GiB."""


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9.]+)\s*(GiB|GB|MiB|MB|TiB|TB)?\s*", text)
    if not m:
        raise BigseqError(f"--device-memory {text!r} is not a size; write e.g. 80GiB or 40GB")
    unit = {"GiB": 2**30, "GB": 10**9, "MiB": 2**20, "MB": 10**6, "TiB": 2**40, "TB": 10**12}[m.group(2) or "GiB"]
    return int(float(m.group(1)) * unit)


def _gib(n: int) -> str:
    return f"{n / GIB:,.1f}"


def render(cfg: EstimateMemoryConfig) -> str:
    if cfg.offload_optimizer not in ("none", "cpu"):
        raise BigseqError(f"--offload-optimizer {cfg.offload_optimizer} is not one of none, cpu")
    device_bytes = parse_size(cfg.device_memory)
    shape = model_shape(cfg.arch, cfg.vocab_size)
    run = dict(world_size=cfg.world_size, micro_batch=cfg.micro_batch, precision=cfg.precision,
               offload_optimizer=cfg.offload_optimizer == "cpu", sequence_parallel=cfg.sequence_parallel_size,
               tensor_parallel=cfg.tensor_parallel_size, mlp_chunks=cfg.mlp_chunks)
    rows = [estimate(shape, zero_stage=stage, seq_len=cfg.tokens_per_sample, **run) for stage in range(4)]
    offload = ", optimizer offload to cpu" if cfg.offload_optimizer == "cpu" else ""
    chunks = f", MLP in {cfg.mlp_chunks} chunks" if cfg.mlp_chunks > 1 else ""
    sp, tp = cfg.sequence_parallel_size, cfg.tensor_parallel_size
    layout = (f" ({sp} sequence-parallel x {cfg.world_size // sp} data-parallel)" if sp > 1 else
              f" ({tp} tensor-parallel x {cfg.world_size // tp} data-parallel)" if tp > 1 else "")
    lines = [f"{cfg.arch}: {shape.num_params:,} parameters | {cfg.world_size} devices{layout} | micro-batch "
             f"{cfg.micro_batch} x {cfg.tokens_per_sample} tokens | {cfg.precision}, Adam{offload}{chunks}",
             "per device, GiB:", "",
             "| ZeRO | parameters | gradients | optimizer states | activations | activations (ckpt) | total | "
             f"total (ckpt) | fits {cfg.device_memory} |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        fits = ("yes" if row.total(False) <= device_bytes else
                "with activation checkpointing" if row.total(True) <= device_bytes else "no")
        marker = " (chosen)" if row.zero_stage == cfg.zero_stage else ""
        lines.append(f"| {row.zero_stage}{marker} | {_gib(row.parameters)} | {_gib(row.gradients)} | "
                     f"{_gib(row.optimizer_states)} | {_gib(row.activations)} | {_gib(row.activations_checkpointed)}"
                     f" | {_gib(row.total(False))} | {_gib(row.total(True))} | {fits} |")
    lines.append("")  # ends the markdown table
    if cfg.offload_optimizer == "cpu":
        lines.append("host memory per device for the offloaded state, GiB: "
                     + ", ".join(f"ZeRO-{r.zero_stage} {_gib(r.host_bytes)}" for r in rows))
    fitting = [f"ZeRO-{r.zero_stage}" for r in rows if r.total(True) <= device_bytes]
    lines.append(f"fits in {cfg.device_memory}: {', '.join(fitting) if fitting else 'none of the stages'}"
                 " (with activation checkpointing where the total needs it; framework buffers and "
                 "fragmentation not counted)")
    longest = [longest_sequence(shape, device_bytes, ckpt, zero_stage=cfg.zero_stage, **run) for ckpt in (False, True)]
    lines.append(f"longest sequence that fits {cfg.device_memory} at ZeRO-{cfg.zero_stage} (micro-batch "
                 f"{cfg.micro_batch}): {longest[0]:,} tokens, {longest[1]:,} with activation checkpointing"
                 + ("" if longest[1] else " (the model states alone do not fit)"))
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = FlagParser(prog="bigseq estimate-memory")
    add_dataclass_args(parser, EstimateMemoryConfig, "options")
    cfg = EstimateMemoryConfig(**vars(parser.parse_args(argv)))
    if cfg.zero_stage not in (0, 1, 2, 3):
        raise BigseqError(f"--zero-stage {cfg.zero_stage} does not exist; use 0, 1, 2 or 3")
    table = render(cfg)
    print(table)
    return table
