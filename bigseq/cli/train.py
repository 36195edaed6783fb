"""`bigseq train`: parse flags, build task/model/criterion, hand them to the Trainer."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

from bigseq import cpu_allocator, options, tasks
from bigseq.checkpoint import files as ckpt_files
from bigseq.checkpoint import manager as ckpt
from bigseq.distributed import engine as ds_engine
from bigseq.distributed import zero3
from bigseq.distributed.launch_env import init_distributed, shutdown
from bigseq.train_loop import train
from bigseq.trainer import Trainer

log = logging.getLogger("bigseq.train")


def seed_everything(seed: int, rank: int) -> None:
    # dropout differs across ranks (different data), but is reproducible per rank
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)


def main(argv=None):
    cfg = options.parse_train_config(argv)
    cpu_allocator.requested_policy("keep")  # a bad BIGSEQ_CPU_ALLOCATOR is one line before any work starts
    if not cfg.checkpoint.no_save:
        ckpt_files.check_writable(cfg.checkpoint.save_dir)
    # data problems surface before any process group exists, as one clear line
    task = tasks.setup_task(cfg.names["task"], cfg.task)
    task.load_dataset(cfg.dataset.train_subset)
    if not cfg.dataset.disable_validation:
        for split in cfg.dataset.valid_subset.split(","):
            task.load_dataset(split)
    env = init_distributed()
    quiet_deepspeed(env)
    seed_everything(cfg.common.seed, env.rank)
    if cfg.distributed.pipeline_parallel_size > 1:
        from bigseq.pipeline_trainer import PipelineTrainer  # each stage builds only its own layers
        criterion = task.build_criterion(cfg.names["criterion"], cfg.criterion)
        trainer = PipelineTrainer(cfg, task, criterion, env)
    else:
        with ds_engine.model_init_context(cfg, env.world_size):
            model = task.build_model(cfg.names["model"], cfg.model, seed=cfg.common.seed)
        criterion = task.build_criterion(cfg.names["criterion"], cfg.criterion)
        trainer = Trainer(cfg, task, model, criterion, env)
    # training's random stream (dropout) starts from the seed, whatever building the model drew from it
    # (bigseq's models skip PyTorch's default init, which draws; a --user-dir model may not)
    seed_everything(cfg.common.seed, env.rank)
    if env.is_main:
        print(f"bigseq | model {cfg.names['arch']}: {trainer.num_params:,} parameters | "
              f"world size {env.world_size} | ZeRO {trainer.engine.zero_optimization_stage()} | "
              f"precision {trainer.precision}", flush=True)
        if hasattr(trainer, "stage_params"):
            print(f"bigseq | pipeline: {trainer.num_stages} stages x {trainer.dp_size} data-parallel | parameters "
                  f"per stage {', '.join(f'{n:,}' for n in trainer.stage_params)} | memory per stage (weights+grads+"
                  f"optimizer, est.) {', '.join(f'{b / 2**20:,.1f} MiB' for b in trainer.stage_memory_bytes)} | "
                  f"bubble {trainer.bubble_fraction:.1%} (1F1B, {cfg.optimization.update_freq} micro-batches)",
                  flush=True)
        if cfg.distributed.pipeline_parallel_size == 1 and any(map(zero3.is_partitioned, model.parameters())):
            print(f"bigseq | ZeRO-3: built sharded, {zero3.resident_numel(model):,} of {trainer.num_params:,} "
                  f"parameter elements on this rank", flush=True)
        if cfg.distributed.activation_checkpointing:
            print(f"bigseq | activation checkpointing: every {cfg.distributed.checkpoint_interval} layer(s)",
                  flush=True)
    resume = ckpt.load(trainer, cfg.checkpoint.save_dir)
    if resume is None and cfg.checkpoint.finetune_from_model:
        ckpt.load_weights_only(trainer, cfg.checkpoint.finetune_from_model)
    if resume is not None and env.is_main:
        print(f"bigseq | resumed from {cfg.checkpoint.save_dir} at update {trainer.num_updates}", flush=True)
    run = train(cfg, trainer, task, env, resume)
    if env.is_main:
        print(f"bigseq | done: {trainer.num_updates} updates, epoch {run.itr.epoch}", flush=True)
    shutdown()
    return run


def quiet_deepspeed(env) -> None:
    """DeepSpeed logs at INFO on every rank; users read bigseq's log instead."""
    from deepspeed.utils import logger as ds_logger
    ds_logger.setLevel(logging.WARNING if env.is_main else logging.ERROR)
    if os.environ.get("BIGSEQ_DS_VERBOSE"):
        ds_logger.setLevel(logging.INFO)


def cli_main(argv=None) -> int:
    from bigseq.cli.errors import run_main
    return run_main(main, argv, prog="bigseq train")


if __name__ == "__main__":
    from bigseq.distributed.launch_env import run_entry_point
    run_entry_point(cli_main)
