"""PipelineTrainer: the Trainer for --pipeline-parallel-size > 1 (DeepSpeed's PipelineEngine).

One update = ``engine.train_batch`` over the update's ``update_freq`` local
micro-batches. Ranks are laid out stage-major (stage s holds ranks
s*dp .. s*dp+dp-1); data-parallel rank = rank % dp, and every stage of a
replica reads the same slices. The logged sums are exact: the loss sums come
from the last stage's criterion, the token counts from the first stage, both
all-reduced over the world, so the numbers equal the non-pipeline Trainer's.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from bigseq.distributed import engine as ds_engine
from bigseq.distributed.pipeline import build_pipeline_module
from bigseq.trainer import _SUM_KEYS, Trainer


def bubble_fraction(num_stages: int, micro_batches: int) -> float:
    """Idle share of DeepSpeed's 1F1B TrainSchedule: (P - 1) / (M + P - 1) for P stages, M micro-batches."""
    return (num_stages - 1) / (micro_batches + num_stages - 1)


def stage_memory_bytes(params: int, precision: str, optimizer_states: int, zero_shards: int) -> int:
    """Estimate of one stage's static memory: weights + gradients + optimizer states (fp32 states, plus an
    fp32 master copy with bf16/fp16), the optimizer part split over ``zero_shards`` ranks by ZeRO-1."""
    weight = 4 if precision == "fp32" else 2
    optimizer = 4 * optimizer_states + (0 if precision == "fp32" else 4)
    return int(params * (2 * weight + optimizer / zero_shards))


class PipelineTrainer(Trainer):
    def __init__(self, cfg, task, criterion, env):  # noqa: the plain model is never built
        self.cfg, self.task, self.criterion, self.env = cfg, task, criterion, env
        self.num_stages = cfg.distributed.pipeline_parallel_size
        module, self.pipeline_loss = build_pipeline_module(cfg, task, criterion, env.world_size)
        self.dp_size = env.world_size // self.num_stages
        self.dp_rank = module._grid.data_parallel_id
        self.engine, self.optimizer, self.lr_scheduler, self.ds_config = ds_engine.initialize(
            cfg, module, self.dp_size)
        self.precision = ds_engine.effective_precision(self.ds_config)
        self.num_updates = 0
        self.skipped_nonfinite = 0
        self.skipped_overflow = 0
        self._nonfinite_in_a_row = 0
        self.stage_params, held = self._stage_param_counts(module)
        self.num_params = sum(self.stage_params)
        self.stage_memory_bytes = [stage_memory_bytes(n, self.precision, self._optimizer_states_per_param(),
                                                      self.dp_size if self.engine.zero_optimization() else 1)
                                   for n in held]
        self.bubble_fraction = bubble_fraction(self.num_stages, cfg.optimization.update_freq)
        self._gnorm: float | None = None
        if not self.engine.zero_optimization() and self.precision == "fp32":
            self._norm_before_step(module)

    def _norm_before_step(self, module) -> None:
        """fp32 without ZeRO: compute the norm over all stages right before clipping/stepping (all stages
        step together), clip by it, and skip the step (and the schedule) when it is not finite."""
        step, pipe_group = self.optimizer.step, module._grid.get_pipe_parallel_group()
        params = [p for p in module.parameters() if not getattr(p, "ds_pipe_replicated", False)]

        max_norm = self.engine.gradient_clipping()

        def global_norm() -> None:
            grads = [p.grad.detach().double() for p in params if p.grad is not None]
            sq = torch.stack([g.pow(2).sum() for g in grads]).sum() if grads else torch.zeros((), dtype=torch.float64)
            dist.all_reduce(sq, group=pipe_group)
            self._gnorm = math.sqrt(float(sq))

        def norm_then_clip():
            # DeepSpeed's fp32 clipping sums the norm over the tensor-parallel group only, i.e. per stage;
            # clip by the norm over all stages instead (and log it before clipping, as the plain Trainer)
            global_norm()
            coef = min(1.0, max_norm / (self._gnorm + 1e-6))
            for p in module.parameters():
                if p.grad is not None:
                    p.grad.mul_(coef)

        def step_after_norm(*args, **kwargs):
            if self._gnorm is None:
                global_norm()
            if not math.isfinite(self._gnorm):
                self.optimizer.skip_next_step = True  # cleared by train_step, after the schedule's step
            return step(*args, **kwargs)

        self.engine.clip_fp32_gradients = norm_then_clip
        self.optimizer.step = step_after_norm

    def _stage_param_counts(self, module) -> tuple[list[int], list[int]]:
        """(parameters per stage with a tied module counted on its first stage only, parameters each stage
        holds: a tied module on every stage that uses it)."""
        counts = torch.zeros(2, self.env.world_size, dtype=torch.float64)
        counts[0, self.env.rank] = sum(p.numel() for p in module.parameters()
                                       if not getattr(p, "ds_pipe_replicated", False))
        counts[1, self.env.rank] = sum(p.numel() for p in module.parameters())
        dist.all_reduce(counts)
        first_ranks = [s * self.dp_size for s in range(self.num_stages)]
        return [int(counts[0, r]) for r in first_ranks], [int(counts[1, r]) for r in first_ranks]

    def _optimizer_states_per_param(self) -> int:
        name = self.cfg.names["optimizer"]
        if name == "sgd":
            return 1 if getattr(self.cfg.optimizer, "momentum", 0.0) else 0
        return 1 if name == "adafactor" else 2  # Adam-style: exp_avg and exp_avg_sq (adafactor: ~factored)

    @property
    def is_first_stage(self) -> bool:
        return self.engine.is_first_stage()

    def _batches(self, samples: list[dict], scale: float):
        scale_t = torch.tensor(scale, dtype=torch.float64)
        return iter([(s["net_input"]["src_tokens"], (s["target"], scale_t)) for s in samples])

    def _local_sums(self, samples: list[dict]) -> torch.Tensor:
        """[loss, nll_loss, ntokens, nsentences, sample_size]: loss from the last stage, counts from the first."""
        sums = torch.zeros(len(_SUM_KEYS), dtype=torch.float64)
        if self.engine.is_last_stage():
            sums[0], sums[1] = self.pipeline_loss.loss_sum, self.pipeline_loss.nll_loss_sum
        if self.is_first_stage:
            ntokens = sum(int(s["ntokens"]) for s in samples)
            sums[2], sums[3], sums[4] = ntokens, sum(int(s["nsentences"]) for s in samples), ntokens
        return sums

    def train_step(self, samples: list[dict]) -> dict[str, float]:
        global_ntokens = sum(int(s["global_ntokens"]) for s in samples)
        scale = len(samples) * self.dp_size / max(global_ntokens, 1)
        self.pipeline_loss.reset()
        overflow_before = self.engine.skipped_steps
        self._gnorm = None
        try:
            self.engine.train_batch(self._batches(samples, scale))
        finally:
            self.optimizer.skip_next_step = False
        sums = self._all_reduce_sums(self._local_sums(samples))
        if not math.isfinite(float(sums[0])) or (self._gnorm is not None and not math.isfinite(self._gnorm)):
            self._on_nonfinite()
        elif self.engine.skipped_steps > overflow_before:
            self.skipped_overflow += 1
            self._nonfinite_in_a_row = 0
        else:
            self.num_updates += 1
            self._nonfinite_in_a_row = 0
        gnorm = self._gnorm if self._gnorm is not None else self.engine.get_global_grad_norm()
        out = dict(zip(_SUM_KEYS, sums.tolist()))
        out["gnorm"] = float(gnorm) if gnorm is not None else float("nan")
        out["lr"] = self.get_lr()
        return out

    @torch.no_grad()
    def valid_sums(self, batches) -> dict[str, float]:
        """Summed logging outputs over a whole split (all ranks run the same number of micro-batches)."""
        samples = [s for s in batches if s is not None]
        self.pipeline_loss.reset()
        if samples:
            self.engine.eval_batch(self._batches(samples, 1.0), num_micro_batches=len(samples), bcast_loss=False)
        return dict(zip(_SUM_KEYS, self._all_reduce_sums(self._local_sums(samples)).tolist()))
