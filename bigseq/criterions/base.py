"""Criterion: computes the loss of a model on a sample.

``forward(model, sample) -> (loss, sample_size, logging_output)``: ``loss`` is
a SUM over the sample's non-pad target tokens (fairseq convention); the
Trainer divides by the global ``sample_size`` so the gradient is that of the
mean over the whole global batch, whatever the world size.
``logging_output`` holds plain numbers (sums) that ``reduce_metrics`` turns
into logged values after they are summed over micro-batches and ranks.
"""

from __future__ import annotations

import math

import torch.nn as nn


class BaseCriterion(nn.Module):
    sum_keys: tuple[str, ...] = ("loss", "nll_loss", "ntokens", "nsentences", "sample_size")
    """The logging outputs that are summed over micro-batches and ranks (then ``reduce_metrics``)."""

    def __init__(self, cfg, task):
        super().__init__()
        self.cfg = cfg
        self.task = task
        self.padding_idx = task.pad_idx

    @classmethod
    def build(cls, cfg, task):
        return cls(cfg, task)

    def forward(self, model, sample):
        raise NotImplementedError

    @staticmethod
    def reduce_metrics(totals: dict[str, float]) -> dict[str, float]:
        """Summed logging outputs -> logged values (loss in nats per token, ppl)."""
        sample_size = max(totals.get("sample_size", 0.0), 1.0)
        out = {"loss": totals.get("loss", 0.0) / sample_size}
        if "nll_loss" in totals:
            out["nll_loss"] = totals["nll_loss"] / sample_size
        out["ppl"] = math.exp(min(out.get("nll_loss", out["loss"]), 50.0))
        return out
