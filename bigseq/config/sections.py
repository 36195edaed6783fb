"""The training config's sections (common, dataset, optimization, checkpoint, distributed) and
TrainConfig, which holds them beside the chosen components' own configs.

Batch sizes are GLOBAL (summed over data-parallel ranks) so the same flags give
the same updates on any world size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(kw_only=True)
class CommonConfig:
    seed: int = 1
    """Random seed: weights are a function of (seed, parameter name); data order of (seed, epoch)."""
    log_interval: int = 10
    """Log training stats every N updates."""
    log_format: Literal["tqdm", "simple", "json", "none"] | None = None
    """Progress/log format; default: a tqdm bar on a terminal, 'simple' lines otherwise."""
    log_file: str | None = None
    """Also write every logged stats record to this file as JSON lines."""
    tensorboard_logdir: str | None = None
    """Write TensorBoard scalars under this folder."""
    wandb_project: str | None = None
    """Also log every stats record to this Weights & Biases project (pip install bigseq[wandb])."""
    max_nonfinite_updates: int = 5
    """Stop with an error after this many consecutive updates with a non-finite loss (each is skipped)."""


@dataclass(kw_only=True)
class DatasetConfig:
    batch_size: int | None = None
    """Sentences per micro-batch, GLOBAL over data-parallel ranks (must divide by the DP world size)."""
    max_tokens: int | None = None
    """Max tokens per micro-batch, GLOBAL over data-parallel ranks (padding included)."""
    train_subset: str = "train"
    """Split to train on."""
    valid_subset: str = "valid"
    """Split to validate on (comma-separated for several)."""
    validate_interval: int = 1
    """Validate every N epochs (0: never at epoch ends)."""
    validate_interval_updates: int = 0
    """Also validate every N updates (0: off)."""
    disable_validation: bool = False
    """Never validate."""


@dataclass(kw_only=True)
class OptimizationConfig:
    lr: float = 5e-4
    """Peak learning rate (schedulers warm up to it)."""
    max_update: int = 0
    """Stop after this many updates (0: no limit)."""
    max_epoch: int = 0
    """Stop after this many epochs (0: no limit)."""
    max_wall_time: str | None = None
    """Stop after this wall time (seconds, or HH:MM:SS) as on SIGUSR1/SIGTERM: finish the update, save a
    checkpoint, exit with code 75; rerunning the same command resumes from --save-dir."""
    update_freq: int = 1
    """Accumulate gradients over N micro-batches per update."""
    clip_norm: float = 0.0
    """Clip the global gradient norm to this value (0: no clipping)."""


@dataclass(kw_only=True)
class CheckpointConfig:
    save_dir: str = "checkpoints"
    """Folder for checkpoints; training resumes from its latest checkpoint automatically."""
    save_interval: int = 1
    """Save at the end of every N epochs."""
    save_interval_updates: int = 0
    """Also save every N updates (0: off)."""
    keep_last_checkpoints: int = -1
    """Keep only the last N update checkpoints (-1: keep all)."""
    no_save: bool = False
    """Do not save checkpoints."""
    finetune_from_model: str | None = None
    """Start from this checkpoint's weights only (fresh optimizer, schedule and data position)."""


@dataclass(kw_only=True)
class DistributedConfig:
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Training precision; fp16 uses dynamic loss scaling (overflow steps are skipped and counted)."""
    zero_stage: Literal[0, 1, 2, 3] = 0
    """DeepSpeed ZeRO stage."""
    offload_optimizer: Literal["none", "cpu"] = "none"
    """Keep optimizer states on the CPU (DeepSpeedCPUAdam); needs --zero-stage >= 1."""
    deepspeed_config: str | None = None
    """A DeepSpeed JSON config (e.g. ds_configs/zero2.json); bigseq fills its "auto" values, explicit ones win."""
    universal_checkpoint: bool = False
    """Resume from the save dir's universal checkpoint (made by `bigseq convert universal`), e.g. on another
    world size or ZeRO stage; picked automatically when it is the conversion of the latest checkpoint."""
    pipeline_parallel_size: int = 1
    """Pipeline stages (DeepSpeed PipelineModule); the data-parallel degree is world size / this."""
    sequence_parallel_size: int = 1
    """DeepSpeed-Ulysses sequence parallelism: each group of P ranks splits every sample's tokens P ways
    (attention trades sequence slices for head slices); the data-parallel degree is world size / P. P must
    divide the world size, --tokens-per-sample and the (key/value) head counts."""
    tensor_parallel_size: int = 1
    """Tensor-parallel degree T (DeepSpeed AutoTP): each layer's attention and FFN projections are split over
    T consecutive ranks, which read the same batches; the data-parallel degree is world size / T."""
    pipeline_partition_method: str = "parameters"
    """How layers are split into stages: parameters (balance parameter counts), uniform (layer counts),
    or type:<LayerClass> (balance layers whose class name matches, e.g. type:TransformerDecoderLayer)."""
    activation_checkpointing: bool = False
    """Recompute activations in the backward pass instead of keeping them (less memory, about a third more
    compute); the same for plain models (the model's --checkpoint-activations) and pipeline stages."""
    checkpoint_interval: int = 1
    """With --activation-checkpointing: layers per recomputed segment (only each segment's input is kept)."""


SECTIONS = {
    "common": CommonConfig,
    "dataset": DatasetConfig,
    "optimization": OptimizationConfig,
    "checkpoint": CheckpointConfig,
    "distributed": DistributedConfig,
}
COMPONENT_DEFAULTS = {
    "task": "language_modeling",
    "arch": "llama_tiny",
    "criterion": "cross_entropy",
    "optimizer": "adamw",
    "lr_scheduler": "fixed",
}


@dataclass(kw_only=True)
class TrainConfig:
    common: CommonConfig
    dataset: DatasetConfig
    optimization: OptimizationConfig
    checkpoint: CheckpointConfig
    distributed: DistributedConfig
    names: dict[str, str]
    """Chosen component names: task, arch, model, criterion, optimizer, lr_scheduler."""
    task: Any
    model: Any
    criterion: Any
    optimizer: Any
    lr_scheduler: Any
