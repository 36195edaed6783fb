"""Stand-ins for the DeepSpeed engine, a task and a criterion: the Trainer's update core without processes.

``make_trainer`` runs the real ``Trainer._setup`` with ``deepspeed.initialize`` replaced by
a FakeEngine; ``Trainer.__init__`` is skipped because it also tunes the process's allocator.
The model is one weight fixed at 1, so a micro-batch's loss is ``loss_value * w`` and the
gradient the engine accumulates is the sum of what ``backward`` received.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch

from bigseq.distributed import engine as ds_engine
from bigseq.distributed.launch_env import DistEnv
from bigseq.distributed.sequence_parallel import SequenceParallel
from bigseq.training.trainer import Trainer

SUM_KEYS = ("loss", "nll_loss", "ntokens", "nsentences", "sample_size")


@dataclass
class FakeSample:
    loss_value: float
    """The summed loss the task reports for this micro-batch."""
    ntokens: int
    global_ntokens: int

    def sequence_slice(self, rank: int, size: int, pad_idx: int) -> "FakeSample":
        return self  # the loss values stand for this rank's slice already


class FakeTask:
    pad_idx = 1

    def train_step(self, sample: FakeSample, engine, criterion):
        loss = sample.loss_value * engine.module.weight.sum()
        log = {"loss": sample.loss_value, "nll_loss": sample.loss_value, "ntokens": sample.ntokens,
               "nsentences": 1, "sample_size": sample.ntokens}
        return loss, sample.ntokens, log


class FakeEngine:
    """The engine methods the Trainer calls. ``micro_batches`` steps make one update (DeepSpeed's
    gradient_accumulation_steps); an update in ``overflow_updates`` (1-based boundary count) is skipped
    as an fp16 loss-scale overflow is: ``skipped_steps`` grows."""

    def __init__(self, micro_batches: int, *, zero_stage: int = 0, overflow_updates=(), grad_norm=None):
        self.module = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.ones_(self.module.weight)
        self.optimizer = SimpleNamespace(skip_next_step=False)
        self.micro_batches, self.zero_stage = micro_batches, zero_stage
        self.overflow_updates, self.grad_norm = set(overflow_updates), grad_norm
        self.backward_calls: list[tuple[float, bool]] = []  # (loss received, scale_wrt_gas)
        self.boundaries: list[str] = []  # per update: applied | skipped (non-finite) | overflow
        self.skipped_steps = 0
        self._micro_steps = 0

    def backward(self, loss: torch.Tensor, scale_wrt_gas: bool = True) -> None:
        self.backward_calls.append((float(loss.detach()), scale_wrt_gas))
        loss.backward()

    def step(self) -> None:
        self._micro_steps += 1
        if self._micro_steps % self.micro_batches:
            return
        if self.optimizer.skip_next_step:
            self.boundaries.append("skipped")
        elif len(self.boundaries) + 1 in self.overflow_updates:
            self.skipped_steps += 1
            self.boundaries.append("overflow")
        else:
            self.boundaries.append("applied")
        self.module.zero_grad()

    def zero_optimization(self) -> bool:
        return self.zero_stage > 0

    def zero_optimization_stage(self) -> int:
        return self.zero_stage

    def get_global_grad_norm(self):
        return self.grad_norm


class FakeScheduler:
    def get_last_lr(self) -> list[float]:
        return [0.5]


def make_trainer(monkeypatch, engine: FakeEngine, *, world_size: int = 1, max_nonfinite_updates: int = 3,
                 precision: str = "fp32", sequence_parallel: int = 1) -> Trainer:
    ds_config = {"bf16": {"enabled": precision == "bf16"}, "fp16": {"enabled": precision == "fp16"}}
    monkeypatch.setattr(ds_engine, "initialize",
                        lambda cfg, module, dp_size, load_universal, mpu=None: (
                            engine, engine.optimizer, FakeScheduler(), ds_config))
    cfg = SimpleNamespace(common=SimpleNamespace(max_nonfinite_updates=max_nonfinite_updates),
                          checkpoint=SimpleNamespace(save_dir="/nonexistent/save_dir"),
                          distributed=SimpleNamespace(universal_checkpoint=False))
    trainer = Trainer.__new__(Trainer)
    trainer.sp = SequenceParallel(sequence_parallel, 0)
    trainer._setup(cfg, FakeTask(), SimpleNamespace(sum_keys=SUM_KEYS), DistEnv(rank=0, world_size=world_size,
                   local_rank=0), engine.module, dp_rank=0, dp_size=world_size // sequence_parallel)
    return trainer
