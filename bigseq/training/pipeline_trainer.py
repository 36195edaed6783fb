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

from bigseq.distributed.pipeline import build_pipeline_module
from bigseq.distributed.pipeline_engine import GlobalGradNorm, data_parallel_rank, is_replicated
from bigseq.training.stages import bubble_fraction, optimizer_states_per_param, stage_memory_bytes
from bigseq.training.trainer import Trainer


class PipelineTrainer(Trainer):
    def __init__(self, cfg, task, criterion, env):  # the plain model is never built: each stage builds its own
        self.num_stages = cfg.distributed.pipeline_parallel_size
        module, self.pipeline_loss = build_pipeline_module(cfg, task, criterion, env.world_size)
        self._setup(cfg, task, criterion, env, module, dp_rank=data_parallel_rank(module),
                    dp_size=env.world_size // self.num_stages)
        self.stage_params, held = self._stage_param_counts(module)
        self.num_params = sum(self.stage_params)
        zero_shards = self.dp_size if self.engine.zero_optimization() else 1
        states = optimizer_states_per_param(cfg.names["optimizer"], cfg.optimizer)
        self.stage_memory_bytes = [stage_memory_bytes(n, self.precision, states, zero_shards) for n in held]
        self.bubble_fraction = bubble_fraction(self.num_stages, cfg.optimization.update_freq)
        self._global_norm = None
        if not self.engine.zero_optimization() and self.precision == "fp32":
            self._global_norm = GlobalGradNorm(self.engine, self.optimizer, module)

    def startup_report(self) -> list[str]:
        return [f"pipeline: {self.num_stages} stages x {self.dp_size} data-parallel | parameters per stage "
                f"{', '.join(f'{n:,}' for n in self.stage_params)} | memory per stage (weights+grads+optimizer, "
                f"est.) {', '.join(f'{b / 2**20:,.1f} MiB' for b in self.stage_memory_bytes)} | bubble "
                f"{self.bubble_fraction:.1%} (1F1B, {self.cfg.optimization.update_freq} micro-batches)"]

    def _stage_param_counts(self, module) -> tuple[list[int], list[int]]:
        """(parameters per stage with a tied module counted on its first stage only, parameters each stage
        holds: a tied module on every stage that uses it)."""
        counts = torch.zeros(2, self.env.world_size, dtype=torch.float64)
        counts[0, self.env.rank] = sum(p.numel() for p in module.parameters() if not is_replicated(p))
        counts[1, self.env.rank] = sum(p.numel() for p in module.parameters())
        dist.all_reduce(counts)
        first_ranks = [s * self.dp_size for s in range(self.num_stages)]
        return [int(counts[0, r]) for r in first_ranks], [int(counts[1, r]) for r in first_ranks]

    def _batches(self, samples: list, scale: float):
        scale_t = torch.tensor(scale, dtype=torch.float64)
        return iter([(_stage_inputs(s), (s.targets, scale_t)) for s in samples])

    def _local_sums(self, samples: list) -> torch.Tensor:
        """Loss sums from the last stage, token and sentence counts from the first."""
        log = {}
        if self.engine.is_last_stage():
            log.update(loss=self.pipeline_loss.loss_sum, nll_loss=self.pipeline_loss.nll_loss_sum)
        if self.engine.is_first_stage():
            ntokens = sum(int(s.ntokens) for s in samples)
            log.update(ntokens=ntokens, nsentences=sum(int(s.nsentences) for s in samples), sample_size=ntokens)
        return self._as_sums(log)

    def _run_update(self, samples: list) -> tuple[torch.Tensor, float | None, bool]:
        global_ntokens = sum(int(s.global_ntokens) for s in samples)
        scale = len(samples) * self.dp_size / max(global_ntokens, 1)
        self.pipeline_loss.reset()
        if self._global_norm is not None:
            self._global_norm.reset()
        try:
            self.engine.train_batch(self._batches(samples, scale))
        finally:
            self.optimizer.skip_next_step = False
        sums = self._all_reduce(self._local_sums(samples))
        gnorm = self._global_norm.value if self._global_norm is not None else None
        finite = math.isfinite(float(sums[0])) and (gnorm is None or math.isfinite(gnorm))
        return sums, gnorm, finite

    @torch.no_grad()
    def valid_sums(self, batches) -> dict[str, float]:
        """Summed logging outputs over a whole split (all ranks run the same number of micro-batches)."""
        samples = [s for s in batches if s is not None]
        self.pipeline_loss.reset()
        if samples:
            self.engine.eval_batch(self._batches(samples, 1.0), num_micro_batches=len(samples), bcast_loss=False)
        return dict(zip(self.sum_keys, self._all_reduce(self._local_sums(samples)).tolist()))


def _stage_inputs(sample):
    """The first stage's inputs: tokens, or (tokens, positions[, cu_seqlens]) for packed documents."""
    if sample.positions is None:
        return sample.tokens
    layout = () if sample.cu_seqlens is None else (sample.cu_seqlens,)
    return (sample.tokens, sample.positions, *layout)
