"""The steps of `bigseq train` between parsing and the loop: check, start, build, report, resume."""

from __future__ import annotations

import random

import numpy as np
import torch

from bigseq import tasks
from bigseq.checkpoint import files as ckpt_files
from bigseq.checkpoint import manager as ckpt
from bigseq.checkpoint.rng import get_rng_state, set_rng_state
from bigseq.distributed import cpu_allocator, cpu_features, quiet_deepspeed, sequence_parallel, tensor_parallel
from bigseq.distributed import engine as ds_engine
from bigseq.distributed.launch_env import DistEnv, device, init_distributed
from bigseq.training.pipeline_trainer import PipelineTrainer
from bigseq.training.trainer import Trainer


def check_and_load_data(cfg) -> tasks.Task:
    """Everything a user can get wrong in the data or the save dir, as one clear line, before any process
    group exists; returns the task with its splits loaded."""
    cpu_allocator.requested_policy("keep")  # a bad BIGSEQ_CPU_ALLOCATOR is one line before any work starts
    sequence_parallel.check_config(cfg)
    if not cfg.checkpoint.no_save:
        ckpt_files.check_writable(cfg.checkpoint.save_dir)
    task = tasks.setup_task(cfg.names["task"], cfg.task)
    tensor_parallel.check_config(cfg)  # after the task: it sets the model's vocabulary
    task.load_dataset(cfg.dataset.train_subset)
    if not cfg.dataset.disable_validation:
        for split in cfg.dataset.valid_subset.split(","):
            task.load_dataset(split)
    return task


def start_processes() -> DistEnv:
    env = init_distributed()
    quiet_deepspeed(env.is_main)
    return env


def seed_everything(seed: int, rank: int) -> None:
    # dropout differs across ranks (different data), but is reproducible per rank
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)


def build_trainer(cfg, task, env: DistEnv) -> Trainer:
    """The model (or this rank's pipeline stage), the criterion and the engine around them."""
    tensor_parallel.check_world(cfg.distributed.tensor_parallel_size, env.world_size)
    seed_everything(cfg.common.seed, env.rank)
    seeded = get_rng_state()
    criterion = task.build_criterion(cfg.names["criterion"], cfg.criterion)
    if cfg.distributed.pipeline_parallel_size > 1:
        trainer = PipelineTrainer(cfg, task, criterion, env)
    else:
        sp, mpu = sequence_parallel.init_groups(cfg.distributed.sequence_parallel_size, env.rank, env.world_size)
        replica = sp.size * cfg.distributed.tensor_parallel_size  # ranks sharing one batch (SP and TP exclude)
        with ds_engine.model_init_context(cfg, env.world_size // replica, mpu):
            model = task.build_model(cfg.names["model"], cfg.model, seed=cfg.common.seed)
        trainer = Trainer(cfg, task, model, criterion, env, sp, mpu)
    # training's random stream (dropout) starts from the seed, whatever building drew from it
    # (bigseq's models skip PyTorch's default init, which draws; a --user-dir model may not)
    set_rng_state(seeded)
    if env.is_main:
        report(cfg, trainer)
    return trainer


def report(cfg, trainer: Trainer) -> None:
    world = f"world size {trainer.env.world_size}"
    if trainer.sp.enabled:
        world += f" = {trainer.sp.size} sequence-parallel x {trainer.dp_size} data-parallel"
    lines = [f"model {cfg.names['arch']}: {trainer.num_params:,} parameters | {world} | "
             f"ZeRO {trainer.engine.zero_optimization_stage()} | precision {trainer.precision}",
             *trainer.startup_report()]
    if trainer.precision == "bf16" and device().type == "cpu":
        warning = cpu_features.bf16_warning(cpu_features.cpu_flags(), cpu_features.cpu_model())
        lines += [warning] if warning else []
    if cfg.distributed.activation_checkpointing:
        lines.append(f"activation checkpointing: every {cfg.distributed.checkpoint_interval} layer(s)")
    for line in lines:
        print(f"bigseq | {line}", flush=True)


def resume(cfg, trainer: Trainer) -> dict | None:
    """Continue from --save-dir's latest checkpoint, else start from --finetune-from-model's weights if given."""
    state = ckpt.load(trainer, cfg.checkpoint.save_dir)
    if state is None and cfg.checkpoint.finetune_from_model:
        loaded = ckpt.load_weights_only(trainer, cfg.checkpoint.finetune_from_model)
        if trainer.env.is_main:
            print(f"bigseq | {loaded}", flush=True)
    if state is not None and trainer.env.is_main:
        print(f"bigseq | resumed from {cfg.checkpoint.save_dir} at update {trainer.num_updates}", flush=True)
    return state
