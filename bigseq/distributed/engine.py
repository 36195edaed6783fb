"""The ONE place deepspeed.initialize is called.

Assembles the DeepSpeed config (a ds_configs/ template or bigseq's defaults,
whose "auto" values are filled from bigseq's flags; explicit values in the
template win), builds bigseq's own optimizer and LR scheduler, and wraps them
and the model in a DeepSpeed engine.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os

import torch

from bigseq import registry
from bigseq.distributed import cpu_allocator, shm_allreduce, tensor_parallel
from bigseq.distributed.skipping import SkippableLRScheduler, make_step_skippable
from bigseq.errors import BigseqError
from bigseq.models.family import ModelDims, get_family

_DEFAULT_TEMPLATE = {
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "bf16": {"enabled": "auto"},
    "fp16": {"enabled": "auto", "loss_scale": 0, "initial_scale_power": 16},
    "zero_optimization": {"stage": "auto"},
    "steps_per_print": 10**9,
    "wall_clock_breakdown": False,
}


def load_template(path: str | None) -> dict:
    if path is None:
        return copy.deepcopy(_DEFAULT_TEMPLATE)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise BigseqError(f"--deepspeed-config {path}: file not found (templates are in ds_configs/)") from None
    except json.JSONDecodeError as e:
        raise BigseqError(f"--deepspeed-config {path}: not valid JSON ({e})") from None


def _fill(template: dict, key: str, value) -> None:
    if template.get(key, "auto") == "auto":
        template[key] = value


def build_ds_config(cfg, dp_size: int, *, load_universal: bool = False) -> dict:
    """DeepSpeed config for this run; "auto" and missing values come from cfg. ``load_universal``: the run
    resumes from a universal checkpoint (the caller decides; DeepSpeed reads it when loading)."""
    # `accelerate launch --use_deepspeed --deepspeed_config_file F` hands F over in the environment
    ds = load_template(cfg.distributed.deepspeed_config or os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE"))
    d, o, dist = cfg.dataset, cfg.optimization, cfg.distributed
    micro = d.batch_size // dp_size if d.batch_size else 1  # nominal when batching by --max-tokens
    _fill(ds, "train_micro_batch_size_per_gpu", micro)
    _fill(ds, "gradient_accumulation_steps", o.update_freq)
    # DeepSpeed's batch check counts every rank, a tensor-parallel group's copies of one batch included
    ranks = dp_size * dist.tensor_parallel_size
    _fill(ds, "train_batch_size", ds["train_micro_batch_size_per_gpu"] * ds["gradient_accumulation_steps"] * ranks)
    _fill(ds, "gradient_clipping", o.clip_norm)
    for prec in ("bf16", "fp16"):
        section = ds.setdefault(prec, {})
        _fill(section, "enabled", dist.precision == prec)
    zero = ds.setdefault("zero_optimization", {})
    _fill(zero, "stage", dist.zero_stage)
    if dist.offload_optimizer == "cpu":
        zero.setdefault("offload_optimizer", {"device": "cpu"})
    if zero["stage"] == 3:
        family = get_family(cfg.names["model"])
        _fill_zero3_buckets(zero, family.dims(cfg.model) if family.dims else None)
    if ds["gradient_accumulation_steps"] != o.update_freq:
        raise BigseqError(f"--deepspeed-config sets gradient_accumulation_steps={ds['gradient_accumulation_steps']} "
                          f"but --update-freq is {o.update_freq}; make them equal or set it to \"auto\"")
    pipe = ds.get("pipeline")
    if isinstance(pipe, dict):  # a pipeline template's "auto" values (ds_configs/pipeline.json)
        _fill(pipe, "activation_checkpoint_interval",
              dist.checkpoint_interval if dist.activation_checkpointing else 0)
    if dist.tensor_parallel_size > 1:  # a template's own section wins, as its other explicit values do
        ds.setdefault("tensor_parallel", tensor_parallel.ds_section(dist.tensor_parallel_size))
    ds.setdefault("steps_per_print", 10**9)
    # bigseq's optimizers (sgd, adafactor, ...) are ordinary torch optimizers; ZeRO partitions any of them
    ds.setdefault("zero_allow_untested_optimizer", True)
    if load_universal:
        ds.setdefault("checkpoint", {}).setdefault("load_universal", True)
    return ds


def _fill_zero3_buckets(zero: dict, dims: ModelDims | None) -> None:
    """ZeRO-3 buffer sizes from the hidden size d, as transformers' DeepSpeed integration sets them.

    DeepSpeed's defaults (5e8-element reduce bucket, 5e7 prefetch) are sized for billion-parameter
    models: below that, the buckets alone outweigh a rank's shard. d^2 elements is one projection
    matrix (at least 2^20, so tiny models do not pay for thousands of small collectives);
    parameters under 10 d elements (norms, biases) stay unpartitioned, as gathering them costs
    more than it saves. Templates that give numbers keep them.
    """
    if dims is None:
        return
    d = dims.dim
    bucket = max(d * d, 2**20)
    _fill(zero, "reduce_bucket_size", bucket)
    _fill(zero, "stage3_prefetch_bucket_size", int(0.9 * bucket))
    _fill(zero, "stage3_param_persistence_threshold", 10 * d)
    # Only where a template asks ("auto"; ds_configs/zero3_offload.json does): DeepSpeed's 1e9 keeps
    # every gathered layer of a smaller model alive from forward to backward; two layers' worth
    # (one computing, one prefetched) frees each after use, for more all-gathers.
    layer = 4 * d * d + 3 * d * dims.ffn_dim
    for key in ("stage3_max_live_parameters", "stage3_max_reuse_distance"):
        if zero.get(key) == "auto":
            zero[key] = 2 * layer


def effective_precision(ds_config: dict) -> str:
    if ds_config.get("bf16", {}).get("enabled"):
        return "bf16"
    if ds_config.get("fp16", {}).get("enabled"):
        return "fp16"
    return "fp32"


def offloads_optimizer(ds_config: dict) -> bool:
    off = ds_config.get("zero_optimization", {}).get("offload_optimizer") or {}
    return off.get("device", "none") == "cpu"


def build_optimizer(cfg, params, ds_config: dict):
    name = cfg.names["optimizer"]
    opt_cls = registry.OPTIMIZER_REGISTRY.get(name).cls
    if offloads_optimizer(ds_config):
        kwargs = opt_cls.cpu_offload_kwargs(cfg.optimizer) if hasattr(opt_cls, "cpu_offload_kwargs") else None
        if kwargs is None:
            raise BigseqError(f"--offload-optimizer cpu works with --optimizer adam or adamw, not '{name}'")
        from deepspeed.ops.adam import DeepSpeedCPUAdam
        return DeepSpeedCPUAdam(params, lr=cfg.optimization.lr, **kwargs)
    return registry.OPTIMIZER_REGISTRY.build(name, cfg.optimizer, params, lr=cfg.optimization.lr)


def build_lr_scheduler(cfg, optimizer):
    name = cfg.names["lr_scheduler"]
    return registry.LR_SCHEDULER_REGISTRY.build(name, cfg.lr_scheduler, optimizer, lr=cfg.optimization.lr,
                                                max_update=cfg.optimization.max_update)


def initialize(cfg, model: torch.nn.Module, dp_size: int, *, load_universal: bool = False, mpu=None):
    """-> (engine, optimizer, lr_scheduler, ds_config). Non-finite updates can be skipped via the returned objects.
    mpu: DeepSpeed's parallel state (sequence parallelism), which makes dp_size = world / P."""
    import deepspeed

    ds_config = build_ds_config(cfg, dp_size, load_universal=load_universal)
    optimizer = build_optimizer(cfg, [p for p in model.parameters() if p.requires_grad], ds_config)
    scheduler = SkippableLRScheduler(build_lr_scheduler(cfg, optimizer), optimizer)
    make_step_skippable(optimizer)  # after the scheduler: torch's LRScheduler re-wraps optimizer.step
    try:
        engine, ds_optimizer, _, ds_scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config, mpu=mpu)
    except (AssertionError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BigseqError(f"DeepSpeed rejected the configuration: {reason} "
                          f"(check --deepspeed-config, --zero-stage, --precision, batch sizes)") from None
    shm_allreduce.route_all_reduce()
    if engine.dp_world_size == 1 and not engine.zero_optimization() and mpu is None:
        # one data-parallel rank: the all-reduce is the identity, yet DeepSpeed would still flatten
        # every gradient into one buffer, reduce it and copy it back after each backward
        engine.enable_backward_allreduce = False
    return engine, optimizer, scheduler, ds_config


def model_init_context(cfg, dp_size: int, mpu=None):
    """Context entered around task.build_model: with ZeRO-3 each module is sharded as it is built (over all
    ranks; mpu, with sequence parallelism, only makes its batch arithmetic use dp_size = world / P)."""
    ds_config = build_ds_config(cfg, dp_size)  # a --deepspeed-config file may be what asks for stage 3
    if ds_config.get("zero_optimization", {}).get("stage", 0) != 3:
        return contextlib.nullcontext()
    from bigseq.distributed import zero3

    if not torch.cuda.is_available():  # before the first layer is built and partitioned
        cpu_allocator.return_freed_memory()
    return zero3.init_context(ds_config, mpu)



def whole_model(engine):
    """Context in which the engine's module can be called method by method (model.encode, model.decode):
    under ZeRO-3 every parameter is gathered for the duration (read-only) and ZeRO-3's module hooks are off.
    Those hooks gather a module's parameters around its own forward and release them after it, so a weight
    used by another module (a tied output projection in beam search's decode) would be seen as its empty
    partition. DeepSpeed's own unwrap_model_for_generation does both; other stages hold whole parameters."""
    if engine.zero_optimization_stage() != 3:
        return contextlib.nullcontext()
    from deepspeed.runtime.zero import unwrap_model_for_generation
    return unwrap_model_for_generation(engine)
