"""Public kernel functions (torch reference implementation for now)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention(q, k, v, *, causal: bool = True, softmax_scale=None, cu_seqlens=None, max_seqlen=None,
              impl: str = "auto"):
    """q (B, S, Hq, D), k/v (B, S, Hkv, D) -> (B, S, Hq, D)."""
    if cu_seqlens is not None:
        raise NotImplementedError("packed attention")
    hq, hkv = q.shape[2], k.shape[2]
    q_, k_, v_ = (t.transpose(1, 2) for t in (q, k, v))
    # the causal mask is aligned to the END of the keys (decoding with a KV cache)
    sq, sk = q.shape[1], k.shape[1]
    if causal and sq != sk:
        mask = torch.ones(sq, sk, dtype=torch.bool, device=q.device).tril(sk - sq)
        out = F.scaled_dot_product_attention(q_, k_, v_, attn_mask=mask, scale=softmax_scale,
                                             enable_gqa=hq != hkv)
    else:
        out = F.scaled_dot_product_attention(q_, k_, v_, is_causal=causal, scale=softmax_scale,
                                             enable_gqa=hq != hkv)
    return out.transpose(1, 2)


def cross_entropy(logits, target, *, ignore_index: int = -100, label_smoothing: float = 0.0,
                  smoothing: str = "fairseq", z_loss: float = 0.0, reduction: str = "sum", impl: str = "auto"):
    """logits (N, V), target (N,) -> (loss, nll_loss), computed in fp32."""
    lprobs = F.log_softmax(logits.float(), dim=-1)
    mask = target != ignore_index
    safe_t = target.masked_fill(~mask, 0)
    nll = -lprobs.gather(-1, safe_t.unsqueeze(-1)).squeeze(-1)
    loss = nll
    if label_smoothing > 0:
        V = logits.shape[-1]
        smooth = -lprobs.sum(-1)
        if smoothing == "fairseq":
            eps_i = label_smoothing / (V - 1)
            loss = (1.0 - label_smoothing - eps_i) * nll + eps_i * smooth
        else:
            loss = (1.0 - label_smoothing) * nll + label_smoothing / V * smooth
    if z_loss > 0:
        lse = torch.logsumexp(logits.float(), dim=-1)
        loss = loss + z_loss * lse.pow(2)
    loss, nll = loss * mask, nll * mask
    if reduction == "sum":
        return loss.sum(), nll.sum()
    if reduction == "mean":
        n = mask.sum().clamp(min=1)
        return loss.sum() / n, nll.sum() / n
    return loss, nll


def linear_cross_entropy(hidden, weight, target, *, bias=None, **kwargs):
    """hidden (N, D), weight (V, D) -> (loss, nll_loss) of the LM head fused with the loss."""
    logits = F.linear(hidden, weight, bias)
    return cross_entropy(logits, target, **kwargs)
