"""Scoring a plain (non-engine) model on a split: validate and eval-lm."""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def evaluate_split(task, model, criterion, split: str, *, batch_size, max_tokens, progress=None) -> dict:
    """Summed logging outputs of the criterion over a whole split (one process)."""
    task.load_dataset(split)
    itr = task.get_batch_iterator(split, batch_size=batch_size, max_tokens=max_tokens, seed=1, dp_rank=0,
                                  dp_size=1, shuffle=False)
    batches = (s for update in itr.next_epoch_itr() for s in update)
    if progress is not None:
        batches = progress(batches, total=itr.updates_per_epoch)
    sums = dict.fromkeys(criterion.sum_keys, 0.0)
    for sample in batches:
        _, _, log = task.valid_step(sample, model, criterion)
        for k in criterion.sum_keys:
            sums[k] += float(log.get(k, 0.0))
    return sums


def lm_scores(sums: dict) -> dict:
    """Loss in nats per token and perplexity, from summed nll."""
    n = max(sums["ntokens"], 1.0)
    nll = sums.get("nll_loss", sums["loss"]) / n
    return {"loss": nll, "ppl": math.exp(min(nll, 50.0)), "ntokens": int(sums["ntokens"])}
