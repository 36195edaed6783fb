"""Next-token choice from logits: greedy, or sampling with temperature, top-k and top-p."""

from __future__ import annotations

import torch


def top_k_filter(logits_BV: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (ties at the k-th value kept), -inf elsewhere."""
    if k <= 0 or k >= logits_BV.shape[-1]:
        return logits_BV
    kth_B1 = logits_BV.topk(k, dim=-1).values[..., -1:]
    return logits_BV.masked_fill(logits_BV < kth_B1, float("-inf"))


def top_p_filter(logits_BV: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability sums to >= p (the nucleus)."""
    if p <= 0 or p >= 1:
        return logits_BV
    sorted_logits, order = logits_BV.sort(dim=-1, descending=True)
    probs = sorted_logits.float().softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= p  # the top token always has 0 mass before it: it is always kept
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits_BV.masked_fill(drop, float("-inf"))


def choose_next(logits_BV: torch.Tensor, *, sampling: bool = False, temperature: float = 1.0, top_k: int = 0,
                top_p: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """-> next token ids (B,). Greedy unless ``sampling``; top_k <= 0 and top_p outside (0, 1) are off."""
    if not sampling:
        return logits_BV.argmax(dim=-1)
    logits_BV = logits_BV.float() / temperature
    logits_BV = top_p_filter(top_k_filter(logits_BV, top_k), top_p)
    probs_BV = logits_BV.softmax(dim=-1)
    return torch.multinomial(probs_BV, 1, generator=generator).squeeze(-1)
