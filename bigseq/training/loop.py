"""The epoch/update loop: train, log, validate, save, stop (fairseq's train())."""

from __future__ import annotations

import math
import time

from bigseq.checkpoint import manager as ckpt
from bigseq.distributed.launch_env import device
from bigseq.distributed.preemption import StopRequest, exit_preempted
from bigseq.logging import finish_wandb_runs, progress_bar
from bigseq.models.family import get_family
from bigseq.training.throughput import Throughput


def _reduce(trainer, sums: dict) -> dict:
    return trainer.criterion.reduce_metrics(sums)


class Run:
    """State of one training run: the trainer, its batch iterator and the logging set-up."""

    def __init__(self, cfg, trainer, task, env):
        self.cfg, self.trainer, self.task, self.env = cfg, trainer, task, env
        self.start_wall = time.perf_counter()
        # pipeline stages of one replica read the same data: data-parallel rank/size, not the world's
        self.dp_rank, self.dp_size = trainer.dp_rank, trainer.dp_size
        self.itr = task.get_batch_iterator(
            cfg.dataset.train_subset, batch_size=cfg.dataset.batch_size, max_tokens=cfg.dataset.max_tokens,
            seed=cfg.common.seed, dp_rank=self.dp_rank, dp_size=self.dp_size,
            update_freq=cfg.optimization.update_freq)
        family = get_family(cfg.names["model"])
        self.throughput = Throughput(family.flops_per_token(cfg.model, trainer.num_params, task.sequence_length))
        self.stop_request = StopRequest(cfg.optimization.max_wall_time, env.world_size, device())
        self.preempted = False  # SIGUSR1/SIGTERM or --max-wall-time: save, exit for a requeue

    def progress(self, iterable, epoch: int, prefix: str | None, total: int | None = None, start: int = 0):
        c = self.cfg.common
        return progress_bar(iterable, log_format=c.log_format, log_interval=c.log_interval, epoch=epoch,
                            prefix=prefix, total=total, log_file=c.log_file, start=start,
                            tensorboard_logdir=c.tensorboard_logdir, wandb_project=c.wandb_project,
                            enabled=self.env.is_main)

    def should_stop(self) -> bool:
        o = self.cfg.optimization
        return self.preempted or (o.max_update > 0 and self.trainer.num_updates >= o.max_update) or (
            o.max_epoch > 0 and self.itr.epoch > o.max_epoch) or (
            o.max_epoch > 0 and self.itr.epoch == o.max_epoch and self.itr.end_of_epoch())

    def save(self) -> None:
        if self.cfg.checkpoint.no_save:
            return
        ckpt.save(self.trainer, self.cfg.checkpoint.save_dir, {"iterator": self.itr.state_dict()})

    def validate(self, epoch: int) -> dict | None:
        d = self.cfg.dataset
        if d.disable_validation:
            return None
        results = {}
        for split in d.valid_subset.split(","):
            batches = self.task.get_batch_iterator(
                split, batch_size=d.batch_size, max_tokens=d.max_tokens, seed=self.cfg.common.seed,
                dp_rank=self.dp_rank, dp_size=self.dp_size, shuffle=False)
            local = (s for update in batches.next_epoch_itr() for s in update)
            sums = self.trainer.valid_sums(self.progress(local, epoch, f"valid on '{split}'"))
            stats = _reduce(self.trainer, sums)
            stats.update(self.task.valid_metrics(sums), num_updates=self.trainer.num_updates)
            bar = self.progress([], epoch, f"valid on '{split}'")
            bar.print(stats, tag=split, step=self.trainer.num_updates)
            results[split] = stats
        return results

    def train_epoch(self) -> None:
        cfg, trainer = self.cfg, self.trainer
        epoch_itr = self.itr.next_epoch_itr()
        epoch = self.itr.epoch
        done_before = self.itr.iterations_in_epoch  # > 0 when resuming mid-epoch
        bar = self.progress(epoch_itr, epoch, None, total=self.itr.updates_per_epoch, start=done_before)
        window: dict[str, float] = {}
        for samples in bar:
            out = trainer.train_step(samples)
            self.throughput.add(out["ntokens"])
            for k in trainer.sum_keys:
                window[k] = window.get(k, 0.0) + out[k]
            window["gnorm_sum"] = window.get("gnorm_sum", 0.0) + (out["gnorm"] if math.isfinite(out["gnorm"]) else 0.0)
            window["steps"] = window.get("steps", 0) + 1
            n = trainer.num_updates
            stop_requested = self.stop_request.should_stop()  # collective: every rank, once per update
            self.preempted = stop_requested and not self.should_stop()  # a finished run just ends
            if n % cfg.common.log_interval == 0 or self.should_stop():
                bar.log(self._train_stats(window, out), tag="train", step=n)
                window = {}
            if cfg.dataset.validate_interval_updates and n % cfg.dataset.validate_interval_updates == 0:
                self.validate(epoch)
            if cfg.checkpoint.save_interval_updates and n % cfg.checkpoint.save_interval_updates == 0 \
                    and not self.should_stop():
                self.save()
            if self.should_stop():
                break

    def _train_stats(self, window: dict, last: dict) -> dict:
        stats = _reduce(self.trainer, window)
        stats.update(self.throughput.read_and_reset())
        stats.update(num_updates=self.trainer.num_updates, lr=last["lr"],
                     gnorm=window["gnorm_sum"] / max(window["steps"], 1),
                     wall=round(time.perf_counter() - self.start_wall, 1))
        if self.trainer.skipped_nonfinite or self.trainer.skipped_overflow:
            stats.update(skipped_nonfinite=self.trainer.skipped_nonfinite,
                         skipped_overflow=self.trainer.skipped_overflow)
        return stats


def train(cfg, trainer, task, env, resume_state: dict | None) -> Run:
    run = Run(cfg, trainer, task, env)
    if resume_state is not None:
        run.itr.load_state_dict(resume_state["iterator"])
    while not run.should_stop():
        run.train_epoch()
        if run.preempted:
            run.save()
            exit_preempted(run.stop_request.reason, trainer.num_updates, cfg.checkpoint, env.is_main)
        epoch = run.itr.epoch
        done = run.should_stop()
        at_epoch_end = run.itr.end_of_epoch()
        if at_epoch_end and cfg.dataset.validate_interval and epoch % cfg.dataset.validate_interval == 0 or done:
            run.validate(epoch)
        if at_epoch_end and epoch % cfg.checkpoint.save_interval == 0 or done:
            run.save()
    run.stop_request.restore()
    finish_wandb_runs()  # uploads what is left; a preempted run exits above and wandb finishes it at exit
    return run
