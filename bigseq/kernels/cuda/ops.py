"""Python side of the CUDA ops: the cross-entropy row backend and decode attention.

The row functions follow the backend contract of bigseq.kernels.loss_functions.
"""

from __future__ import annotations

import math

import torch

from bigseq.kernels.cuda import builder


def _stream(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream


def rows_forward(logits_NV, target_N, *, ignore_index, coef_nll, coef_smooth, z_loss):
    """-> (loss_N, nll_N, lse_N) fp32."""
    with torch.cuda.device(logits_NV.device):
        loss, nll, lse = builder.load().ce_forward(logits_NV, target_N.long().contiguous(), ignore_index, coef_nll,
                                                   coef_smooth, z_loss, _stream(logits_NV))
    return loss, nll, lse


def rows_backward(logits_NV, target_N, lse_N, g_loss_N, g_nll_N, *, ignore_index, coef_nll, coef_smooth, z_loss,
                  out=None):
    """dL/dlogits; `out` may alias logits_NV."""
    dlogits = torch.empty_like(logits_NV) if out is None else out
    with torch.cuda.device(logits_NV.device):
        builder.load().ce_backward(logits_NV, target_N.long().contiguous(), lse_N, g_loss_N, g_nll_N, dlogits,
                                   ignore_index, coef_nll, coef_smooth, z_loss, _stream(logits_NV))
    return dlogits


SUPPORTED_HEAD_DIMS = (32, 64, 128, 256)


def decode_attention(q_BHD, k_cache, v_cache, cache_seqlens, *, softmax_scale=None):
    """One query token per sequence against its first cache_seqlens[b] cache entries (inference only)."""
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(q_BHD.shape[-1])
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q_BHD, k_cache, v_cache))
    with torch.cuda.device(q.device):
        return builder.load().decode_attention(q, k, v, cache_seqlens.contiguous(), float(scale), _stream(q))
