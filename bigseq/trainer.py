"""Trainer: one update = `update_freq` micro-batches through the DeepSpeed engine.

Losses are SUMS over target tokens; each micro-batch's loss is divided by the
update's GLOBAL token count (known from the batch, no communication) and
multiplied by the data-parallel size (DeepSpeed averages gradients over
ranks), so the gradient is that of the mean loss over the whole global batch,
whatever the world size or accumulation. Logged numbers are all-reduced sums,
never rank 0's slice.
"""

from __future__ import annotations

import math
import time

import torch
import torch.distributed as dist

from bigseq import cpu_allocator
from bigseq.distributed import engine as ds_engine
from bigseq.distributed import zero3
from bigseq.errors import BigseqError

_SUM_KEYS = ("loss", "nll_loss", "ntokens", "nsentences", "sample_size")


def flops_per_token(model_cfg, num_params: int, seq_len: int) -> float:
    """Training FLOPs per token: 6N plus causal attention's 12*L*D*T (PaLM's estimate)."""
    layers = getattr(model_cfg, "decoder_layers", 0)
    dim = getattr(model_cfg, "decoder_embed_dim", 0)
    return 6.0 * num_params + 12.0 * layers * dim * seq_len


class Trainer:
    def __init__(self, cfg, task, model, criterion, env):
        self.cfg, self.task, self.criterion, self.env = cfg, task, criterion, env
        self.engine, self.optimizer, self.lr_scheduler, self.ds_config = ds_engine.initialize(
            cfg, model, env.world_size)
        self.precision = ds_engine.effective_precision(self.ds_config)
        self.num_updates = 0
        self.skipped_nonfinite = 0
        self.skipped_overflow = 0
        self._nonfinite_in_a_row = 0
        self.num_params = sum(zero3.full_numel(p) for p in model.parameters())
        if all(p.device.type == "cpu" for p in model.parameters()):
            if self.engine.zero_optimization_stage() == 3:
                cpu_allocator.return_freed_memory()  # memory is the point of ZeRO-3: see cpu_allocator
            else:
                cpu_allocator.keep_freed_memory()  # no page faults for each update's fresh buffers

    @property
    def model(self):
        return self.engine.module

    def get_lr(self) -> float:
        return self.lr_scheduler.get_last_lr()[0]

    def _all_reduce_sums(self, sums: torch.Tensor) -> torch.Tensor:
        if self.env.world_size > 1:
            dist.all_reduce(sums)
        return sums

    def _grad_norm_stage0(self) -> float | None:
        """DeepSpeed computes the norm itself except for fp32 without ZeRO; compute it there."""
        if self.engine.zero_optimization() or self.precision != "fp32":
            return None
        grads = [p.grad for p in self.engine.module.parameters() if p.grad is not None]
        return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0

    def train_step(self, samples: list[dict]) -> dict[str, float]:
        """One update over this rank's slices of `update_freq` global micro-batches."""
        global_ntokens = sum(int(s["global_ntokens"]) for s in samples)
        scale = self.env.world_size / max(global_ntokens, 1)
        sums = torch.zeros(len(_SUM_KEYS), dtype=torch.float64)
        overflow_before = self.engine.skipped_steps
        gnorm = None
        for i, sample in enumerate(samples):
            loss, sample_size, log = self.task.train_step(sample, self.engine, self.criterion)
            self.engine.backward(loss * scale, scale_wrt_gas=False)
            sums += torch.tensor([float(log.get(k, 0.0)) for k in _SUM_KEYS], dtype=torch.float64)
            if i < len(samples) - 1:
                self.engine.step()  # not a boundary: DeepSpeed only counts the micro-step
        self._all_reduce_sums(sums)
        finite = math.isfinite(float(sums[0]))
        if not finite:
            gnorm = float("nan")
        else:
            gnorm = self._grad_norm_stage0()
        self.optimizer.skip_next_step = not finite
        try:
            self.engine.step()
        finally:
            self.optimizer.skip_next_step = False
        overflowed = self.engine.skipped_steps > overflow_before
        if not finite:
            self._on_nonfinite()
        else:
            self._nonfinite_in_a_row = 0
            if overflowed:
                self.skipped_overflow += 1
            else:
                self.num_updates += 1
        if gnorm is None:
            gnorm = self.engine.get_global_grad_norm()
        out = dict(zip(_SUM_KEYS, sums.tolist()))
        out["gnorm"] = float(gnorm) if gnorm is not None else float("nan")
        out["lr"] = self.get_lr()
        return out

    def _on_nonfinite(self) -> None:
        self.skipped_nonfinite += 1
        self._nonfinite_in_a_row += 1
        limit = self.cfg.common.max_nonfinite_updates
        if self._nonfinite_in_a_row >= limit:
            raise BigseqError(f"the loss was non-finite for {limit} updates in a row (each was skipped); "
                              f"lower --lr, set --clip-norm, use --precision fp32/bf16, or check the data "
                              f"(--max-nonfinite-updates sets the limit)")

    @torch.no_grad()
    def valid_sums(self, batches) -> dict[str, float]:
        """Summed logging outputs over a whole split (all ranks)."""
        sums = torch.zeros(len(_SUM_KEYS), dtype=torch.float64)
        for sample in batches:
            if sample is None or sample.get("nsentences", 1) == 0:
                continue
            _, _, log = self.task.valid_step(sample, self.engine, self.criterion)
            sums += torch.tensor([float(log.get(k, 0.0)) for k in _SUM_KEYS], dtype=torch.float64)
        self._all_reduce_sums(sums)
        return dict(zip(_SUM_KEYS, sums.tolist()))


class Throughput:
    """Tokens/s and model TFLOP/s between two log points."""

    def __init__(self, flops_per_token: float):
        self.flops_per_token = flops_per_token
        self.start = time.perf_counter()
        self.tokens = 0.0

    def add(self, ntokens: float) -> None:
        self.tokens += ntokens

    def read_and_reset(self) -> dict[str, float]:
        now = time.perf_counter()
        elapsed = max(now - self.start, 1e-9)
        tps = self.tokens / elapsed
        self.start, self.tokens = now, 0.0
        return {"tokens_per_s": tps, "tflops": tps * self.flops_per_token / 1e12}
