"""Trainer: one update = `update_freq` micro-batches through the DeepSpeed engine.

Losses are SUMS over target tokens; each micro-batch's loss is divided by the
update's GLOBAL token count (known from the batch, no communication) and
multiplied by the number of ranks DeepSpeed divides the reduced gradient by, so
the gradient is that of the mean loss over the whole global batch, whatever the
world size, sequence- or tensor-parallel degree or accumulation. Logged numbers
are all-reduced sums, never rank 0's slice.

With --sequence-parallel-size P each group of P ranks is one data-parallel
replica: every rank takes its T/P slice of the replica's batch (LMBatch.sequence_slice).
With --tensor-parallel-size T the T ranks of a group share one batch whole (AutoTP
splits the layers); the two exclude each other.

The update core (``train_step``: count the update, the skipped one or the
overflow, stop after too many non-finite losses in a row) is shared with the
PipelineTrainer; each trainer only says how its engine runs one update
(``_run_update``) and one split (``valid_sums``).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.distributed as dist

from bigseq.checkpoint import universal
from bigseq.distributed import cpu_allocator, sequence_parallel, shm_allreduce, tensor_parallel, zero3
from bigseq.distributed import engine as ds_engine
from bigseq.distributed.sequence_parallel import SequenceParallel
from bigseq.errors import BigseqError

NO_SP = SequenceParallel(1, 0)


class Trainer:
    num_stages = 1
    sp = NO_SP
    tp_rank, tp_size = 0, 1

    def __init__(self, cfg, task, model, criterion, env, sp: SequenceParallel = NO_SP, mpu=None):
        """sp, mpu: this rank's sequence-parallel group and DeepSpeed's parallel state (see sequence_parallel)."""
        self.sp = sp
        self.tp_size = tp = cfg.distributed.tensor_parallel_size
        self.tp_rank = env.rank % tp  # the T ranks of a tensor-parallel group are consecutive
        self.num_params = sum(zero3.full_numel(p) for p in model.parameters())  # before AutoTP shards it
        if sp.enabled:
            sequence_parallel.shard_attention(model, sp)
        replica = sp.size * tp  # ranks that share one data-parallel replica's batch
        self._setup(cfg, task, criterion, env, model, dp_rank=env.rank // replica,
                    dp_size=env.world_size // replica, mpu=mpu)
        if all(p.device.type == "cpu" for p in model.parameters()):
            if self.engine.zero_optimization_stage() == 3:
                cpu_allocator.return_freed_memory()  # memory is the point of ZeRO-3: see cpu_allocator
            else:
                cpu_allocator.keep_freed_memory()  # no page faults for each update's fresh buffers

    def _setup(self, cfg, task, criterion, env, module, *, dp_rank: int, dp_size: int, mpu=None) -> None:
        """What every trainer holds: the engine around ``module`` and the update counters."""
        self.cfg, self.task, self.criterion, self.env = cfg, task, criterion, env
        self.dp_rank, self.dp_size = dp_rank, dp_size
        self.sum_keys = criterion.sum_keys
        self.engine, self.optimizer, self.lr_scheduler, self.ds_config = ds_engine.initialize(
            cfg, module, dp_size, load_universal=universal.loads_universal(cfg), mpu=mpu)
        self.precision = ds_engine.effective_precision(self.ds_config)
        self.num_updates = 0
        self.skipped_nonfinite = 0
        self.skipped_overflow = 0
        self._nonfinite_in_a_row = 0

    @property
    def model(self):
        return self.engine.module

    def get_lr(self) -> float:
        return self.lr_scheduler.get_last_lr()[0]

    def startup_report(self) -> list[str]:
        """Lines printed once at the start of a run (rank 0), after the model line."""
        lines = []
        if self.tp_size > 1:
            lines.append(f"tensor parallel: {self.tp_size} x {self.dp_size} data-parallel (DeepSpeed AutoTP)")
        if shm_allreduce.is_routed():
            lines.append("gradient all-reduce and ZeRO all-gather: DeepSpeed's shared-memory kernel, every rank on "
                         "this machine (BIGSEQ_SHM_ALLREDUCE=0: gloo)")
        if any(map(zero3.is_partitioned, self.model.parameters())):
            lines.append(f"ZeRO-3: built sharded, {zero3.resident_numel(self.model):,} of {self.num_params:,} "
                         f"parameter elements on this rank")
        return lines

    # the update core --------------------------------------------------------
    def train_step(self, samples: list) -> dict[str, float]:
        """One update over this rank's slices of `update_freq` global micro-batches."""
        overflow_before = self.engine.skipped_steps
        sums, gnorm, finite = self._run_update(samples)
        if not finite:
            self._on_nonfinite()
        else:
            self._nonfinite_in_a_row = 0
            if self.engine.skipped_steps > overflow_before:
                self.skipped_overflow += 1
            else:
                self.num_updates += 1
        if gnorm is None:
            gnorm = self.engine.get_global_grad_norm()
        out = dict(zip(self.sum_keys, sums.tolist()))
        out["gnorm"] = float(gnorm) if gnorm is not None else float("nan")
        out["lr"] = self.get_lr()
        return out

    def _run_update(self, samples: list) -> tuple[torch.Tensor, float | None, bool]:
        """-> (all-reduced logging sums, gradient norm or None for the engine's, whether the loss was finite)."""
        global_ntokens = sum(int(s.global_ntokens) for s in samples)
        scale = self._reduction_divisor() / max(global_ntokens, 1)
        sums = self._zero_sums()
        for i, sample in enumerate(samples):
            loss, _, log = self.task.train_step(self._local(sample), self.engine, self.criterion)
            self.engine.backward(loss * scale, scale_wrt_gas=False)
            sums += self._as_sums(log)
            if i < len(samples) - 1:
                self.engine.step()  # not a boundary: DeepSpeed only counts the micro-step
        self._all_reduce(sums)
        finite = math.isfinite(float(sums[0]))
        gnorm = self._grad_norm_stage0() if finite else float("nan")
        self.optimizer.skip_next_step = not finite
        try:
            self.engine.step()
        finally:
            self.optimizer.skip_next_step = False
        return sums, gnorm, finite

    def _reduction_divisor(self) -> int:
        """What DeepSpeed divides the summed gradients by. ZeRO 0-2 average over data-parallel replicas and
        SUM over the ranks of a sequence-parallel group; ZeRO-3 averages over every rank (its reduce-scatter
        ignores sequence parallelism). AutoTP reduces over the data-parallel ranks only, at every stage.
        Without SP or TP both are the world size."""
        if self.tp_size > 1 or (self.sp.enabled and self.engine.zero_optimization_stage() < 3):
            return self.dp_size
        return self.env.world_size

    def _local(self, sample):
        """This rank's part of its replica's batch: all of it, or its slice of the sequence."""
        if not self.sp.enabled:
            return sample
        return sample.sequence_slice(self.sp.rank, self.sp.size, self.task.pad_idx)

    def _on_nonfinite(self) -> None:
        self.skipped_nonfinite += 1
        self._nonfinite_in_a_row += 1
        limit = self.cfg.common.max_nonfinite_updates
        if self._nonfinite_in_a_row >= limit:
            raise BigseqError(f"the loss was non-finite for {limit} updates in a row (each was skipped); "
                              f"lower --lr, set --clip-norm, use --precision fp32/bf16, or check the data "
                              f"(--max-nonfinite-updates sets the limit)")

    def _grad_norm_stage0(self) -> float | None:
        """DeepSpeed computes the norm itself except for fp32 without ZeRO; compute it there."""
        if self.engine.zero_optimization() or self.precision != "fp32":
            return None
        if self.tp_size > 1:
            return tensor_parallel.grad_norm(self.engine)
        grads = [p.grad for p in self.engine.module.parameters() if p.grad is not None]
        return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0

    # logging sums -------------------------------------------------------------
    def _zero_sums(self) -> torch.Tensor:
        return torch.zeros(len(self.sum_keys), dtype=torch.float64)

    def _as_sums(self, log: dict) -> torch.Tensor:
        return torch.tensor([float(log.get(k, 0.0)) for k in self.sum_keys], dtype=torch.float64)

    def _all_reduce(self, sums: torch.Tensor) -> torch.Tensor:
        if self.tp_rank:  # a tensor-parallel group's ranks hold copies of one rank's sums: count them once
            sums.zero_()
        if self.env.world_size > 1:
            dist.all_reduce(sums)
        return sums

    @torch.no_grad()
    def valid_sums(self, batches) -> dict[str, float]:
        """Summed logging outputs over a whole split (all ranks): the criterion's and the task's (BLEU)."""
        keys = (*self.sum_keys, *self.task.valid_sum_keys)
        sums = torch.zeros(len(keys), dtype=torch.float64)
        # a task that decodes while validating (--eval-bleu) calls the model method by method: whole weights
        with ds_engine.whole_model(self.engine) if self.task.valid_sum_keys else contextlib.nullcontext():
            for sample in batches:
                if sample is None or sample.nsentences == 0:  # a filler row: all ranks of its SP group skip it
                    continue
                _, _, log = self.task.valid_step(self._local(sample), self.engine, self.criterion)
                sums += torch.tensor([float(log.get(k, 0.0)) for k in keys], dtype=torch.float64)
        return dict(zip(keys, self._all_reduce(sums).tolist()))
