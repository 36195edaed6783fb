"""Torch reference implementations: the oracle the other impls are tested against.

They compute in the inputs' dtype promoted to at least fp32 for the loss (fp64 in
stays fp64, so tests can build an fp64 reference), and with SDPA for attention.
SDPA has no logit soft-capping, so attention with ``softcap`` computes the scores
explicitly as transformers' eager Gemma attention does (scores in the inputs' dtype,
``tanh(s / cap) * cap`` before the mask, softmax in fp32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention(q, k, v, *, causal: bool, softmax_scale, cu_seqlens=None, window=None, key_padding_mask=None,
              softcap=None):
    """Padded q (B, Sq, Hq, D), k/v (B, Sk, Hkv, D); or packed (T, H, D) with cu_seqlens.

    A causal mask is aligned to the END of the keys (decoding with a KV cache); a causal
    ``window`` keeps the last ``window`` keys of each query, itself included;
    ``key_padding_mask`` (B, Sk) is True at keys nobody attends to; ``softcap`` caps the
    scaled scores at +-softcap (``tanh(s / softcap) * softcap``) before the mask.
    """
    if cu_seqlens is not None:
        return _packed_attention(q, k, v, causal=causal, softmax_scale=softmax_scale, cu_seqlens=cu_seqlens,
                                 window=window, softcap=softcap)
    hq, hkv = q.shape[2], k.shape[2]
    q_, k_, v_ = (t.transpose(1, 2) for t in (q, k, v))
    sq, sk = q.shape[1], k.shape[1]
    if sq <= FEW_QUERIES and not causal and window is None and softcap is None and _bmm_ready(q_, k_, v_):
        scale = q.shape[-1] ** -0.5 if softmax_scale is None else softmax_scale
        return _few_queries_bmm(q, k_, v_, key_padding_mask, scale)
    if softcap is not None:
        mask = allowed_keys(sq, sk, causal=causal, window=window, key_padding_mask=key_padding_mask, device=q.device)
        out = softcapped_attention(q_, k_, v_, mask, softmax_scale=softmax_scale, softcap=softcap)
    elif window is not None or key_padding_mask is not None:
        mask = allowed_keys(sq, sk, causal=causal, window=window, key_padding_mask=key_padding_mask, device=q.device)
        out = F.scaled_dot_product_attention(q_, k_, v_, attn_mask=mask, scale=softmax_scale,
                                             enable_gqa=hq != hkv)
    elif causal and sq != sk:
        mask = torch.ones(sq, sk, dtype=torch.bool, device=q.device).tril(sk - sq)
        out = F.scaled_dot_product_attention(q_, k_, v_, attn_mask=mask, scale=softmax_scale,
                                             enable_gqa=hq != hkv)
    else:
        out = F.scaled_dot_product_attention(q_, k_, v_, is_causal=causal, scale=softmax_scale,
                                             enable_gqa=hq != hkv)
    return out.transpose(1, 2)


def allowed_keys(sq: int, sk: int, *, causal: bool, window, key_padding_mask, device) -> torch.Tensor:
    """Boolean mask, True where query i may attend to key j: (Sq, Sk), or (B, 1, Sq, Sk) with padding."""
    allowed = torch.ones(sq, sk, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed.tril(sk - sq)
    if window is not None:  # query i sits at key position i + sk - sq; keep keys after i + sk - sq - window
        allowed = allowed & ~torch.ones_like(allowed).tril(sk - sq - window)
    if key_padding_mask is not None:
        allowed = allowed[None, None] & ~key_padding_mask[:, None, None, :]
    return allowed


def softcapped_attention(q_BHSD, k_BHSD, v_BHSD, allowed, *, softmax_scale, softcap: float) -> torch.Tensor:
    """softmax(mask(tanh(q k^T * scale / cap) * cap)) v in (B, H, S, D) layout; ``allowed`` broadcasts to
    (B, Hq, Sq, Sk). Grouped k/v heads are repeated; a query with no allowed key gets zeros (as SDPA)."""
    scale = q_BHSD.shape[-1] ** -0.5 if softmax_scale is None else softmax_scale
    groups = q_BHSD.shape[1] // k_BHSD.shape[1]
    k_BHSD, v_BHSD = (t.repeat_interleave(groups, dim=1) for t in (k_BHSD, v_BHSD))
    scores = torch.matmul(q_BHSD, k_BHSD.transpose(-1, -2)) * scale
    scores = torch.tanh(scores / softcap) * softcap
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).nan_to_num(0.0).to(q_BHSD.dtype)
    return torch.matmul(probs, v_BHSD)


def _packed_attention(q_THD, k_THD, v_THD, *, causal, softmax_scale, cu_seqlens, window=None, softcap=None):
    """One SDPA call per document, so documents never attend across their boundary."""
    bounds = cu_seqlens.tolist()
    outs = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end == start:
            continue
        doc = [t[start:end].unsqueeze(0) for t in (q_THD, k_THD, v_THD)]
        outs.append(attention(*doc, causal=causal, softmax_scale=softmax_scale, window=window, softcap=softcap)[0])
    return torch.cat(outs, dim=0) if outs else torch.empty_like(q_THD)


def decode_attention(q_BHD, k_cache_BSHD, v_cache_BSHD, cache_seqlens, *, softmax_scale, softcap=None):
    """One query token per sequence against the first cache_seqlens[b] cache entries (None: all of them)."""
    S = k_cache_BSHD.shape[1]
    valid_BS = None
    if cache_seqlens is not None:
        valid_BS = torch.arange(S, device=q_BHD.device)[None, :] < cache_seqlens[:, None].long()
    q_ = q_BHD.unsqueeze(2)  # (B, Hq, 1, D)
    k_, v_ = (t.transpose(1, 2) for t in (k_cache_BSHD, v_cache_BSHD))
    if softcap is not None:
        allowed = (torch.ones((), dtype=torch.bool, device=q_BHD.device) if valid_BS is None
                   else valid_BS[:, None, None, :])
        out = softcapped_attention(q_, k_, v_, allowed, softmax_scale=softmax_scale, softcap=softcap)
        return out.squeeze(2)
    # every row's cache full (beam search, batched decoding of equal lengths): no mask, SDPA's fast path
    mask = None if valid_BS is None or bool(valid_BS.all()) else valid_BS[:, None, None, :]
    out = F.scaled_dot_product_attention(q_, k_, v_, attn_mask=mask, scale=softmax_scale,
                                         enable_gqa=q_BHD.shape[1] != k_cache_BSHD.shape[2])
    return out.squeeze(2)


def smoothing_coefficients(label_smoothing: float, smoothing: str, V: int) -> tuple[float, float]:
    """loss = coef_nll * nll + coef_smooth * sum_j(-log p_j) (before z-loss).

    fairseq: target gets 1-eps, every other class eps/(V-1); uniform (PyTorch): eps/V on every class.
    """
    if label_smoothing == 0.0:
        return 1.0, 0.0
    if smoothing == "fairseq":
        eps_i = label_smoothing / (V - 1)
        return 1.0 - label_smoothing - eps_i, eps_i
    return 1.0 - label_smoothing, label_smoothing / V


def cross_entropy_rows(logits_NV, target_N, *, ignore_index, label_smoothing, smoothing, z_loss):
    """Per-row (loss, nll), zero where target == ignore_index."""
    compute_dtype = torch.promote_types(logits_NV.dtype, torch.float32)
    x = logits_NV.to(compute_dtype)
    lse = torch.logsumexp(x, dim=-1)
    keep = target_N != ignore_index
    safe_t = target_N.masked_fill(~keep, 0)
    nll = lse - x.gather(-1, safe_t.unsqueeze(-1)).squeeze(-1)
    coef_nll, coef_smooth = smoothing_coefficients(label_smoothing, smoothing, x.shape[-1])
    loss = nll
    if coef_smooth:
        smooth = x.shape[-1] * lse - x.sum(-1)  # = -sum_j log p_j
        loss = coef_nll * nll + coef_smooth * smooth
    if z_loss > 0:
        loss = loss + z_loss * lse.pow(2)
    return loss * keep, nll * keep


def reduce_rows(loss, nll, keep, reduction: str):
    """Apply the reduction shared by every impl ('mean' divides by the non-ignored count)."""
    if reduction == "sum":
        return loss.sum(), nll.sum()
    if reduction == "mean":
        n = keep.sum().clamp(min=1)
        return loss.sum() / n, nll.sum() / n
    return loss, nll


def cross_entropy(logits, target, *, ignore_index=-100, label_smoothing=0.0, smoothing="fairseq",
                  z_loss=0.0, reduction="sum"):
    """logits (..., V), target (...) -> (loss, nll_loss)."""
    V = logits.shape[-1]
    loss, nll = cross_entropy_rows(logits.reshape(-1, V), target.reshape(-1), ignore_index=ignore_index,
                                   label_smoothing=label_smoothing, smoothing=smoothing, z_loss=z_loss)
    if reduction == "none":
        return loss.view(target.shape), nll.view(target.shape)
    return reduce_rows(loss, nll, target != ignore_index, reduction)


def linear_cross_entropy(hidden, weight, target, *, bias=None, **ce_kwargs):
    """Unfused: the full logits exist at once."""
    return cross_entropy(F.linear(hidden, weight, bias), target, **ce_kwargs)


FEW_QUERIES = 16
"""Up to this many queries per row (one per beam of a sentence over its shared encoder keys) attend by
batched matrix products on CPU (reference._few_queries_bmm)."""


def _bmm_ready(q_BHQD, k_BHSD, v_BHSD) -> bool:
    """fp32 CPU keys/values whose (B, H) dimensions merge without a copy (stored head-major, as a
    cross-attention cache is), as many query heads as key heads."""
    def mergeable(t):
        return t.stride(-1) == 1 and t.stride(0) == t.shape[1] * t.stride(1)
    return (q_BHQD.device.type == "cpu" and q_BHQD.dtype == torch.float32 and k_BHSD.dtype == torch.float32
            and v_BHSD.dtype == torch.float32 and q_BHQD.shape[1] == k_BHSD.shape[1]
            and mergeable(k_BHSD) and mergeable(v_BHSD))


def _few_queries_bmm(q_BQHD, k_BHSD, v_BHSD, key_padding_mask_BS, scale: float) -> torch.Tensor:
    """A few queries per (row, head) as two batched matrix products (B H, Q, D) x (B H, D, S): at a few
    dozen keys on CPU, 1.5x faster than SDPA's kernel, whose blocking is built for many queries
    (fairseq's decoder attends this way). A row whose every key is padding gets NaN, as from SDPA."""
    B, H, S, D = k_BHSD.shape
    Q = q_BQHD.shape[1]
    q = q_BQHD.transpose(1, 2).reshape(B * H, Q, D)  # copies only for Q > 1 (the queries are few)
    k, v = k_BHSD.flatten(0, 1), v_BHSD.flatten(0, 1)  # views, by _bmm_ready
    if key_padding_mask_BS is None:
        scores = torch.bmm(q, k.transpose(1, 2)).mul_(scale)
    else:
        bias = torch.zeros(B, 1, 1, S, dtype=q.dtype).masked_fill_(key_padding_mask_BS[:, None, None, :], float("-inf"))
        scores = torch.baddbmm(bias.expand(B, H, Q, S).reshape(B * H, Q, S), q, k.transpose(1, 2), alpha=scale)
    return torch.bmm(scores.softmax(-1), v).view(B, H, Q, D).transpose(1, 2)
