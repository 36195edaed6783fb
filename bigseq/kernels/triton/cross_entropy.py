"""Triton cross-entropy rows: one program per row, online logsumexp over vocab blocks.

The forward reads the row once and keeps (max, sum of exp, sum of logits, target
logit) in fp32 registers, so no (N, V) fp32 tensor is ever created. The backward
recomputes softmax from the saved logsumexp and may write the gradient over the
logits (in place), which the chunked linear cross-entropy uses.

Per row, with a = coef_nll, c = coef_smooth (see reference.smoothing_coefficients):
  loss = a * nll + c * (V * lse - sum_j x_j) + z * lse^2
  dloss/dx_j = (a + c * V + 2 z lse) p_j - a [j == t] - c
  dnll/dx_j  = p_j - [j == t]
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

# allocation seam: tests poison these so an element a kernel forgets to write shows up as NaN
_empty, _empty_like = torch.empty, torch.empty_like


@triton.jit
def ce_fwd_kernel(LOGITS, TARGET, LOSS, NLL, LSE, stride_row, V, ignore_index, coef_nll, coef_smooth, z_loss,
                  BLOCK_V: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    base = LOGITS + row * stride_row
    t = tl.load(TARGET + row).to(tl.int64)
    m = float("-inf")
    s = 0.0
    sum_x = 0.0
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        ok = cols < V
        x = tl.load(base + cols, mask=ok, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, 0))  # finite: each block holds at least one column
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), 0)
        sum_x += tl.sum(tl.where(ok, x, 0.0), 0)
        m = m_new
    lse = m + tl.log(s)
    keep = t != ignore_index
    x_t = tl.load(base + tl.where(keep, t, 0)).to(tl.float32)
    nll = lse - x_t
    loss = coef_nll * nll + coef_smooth * (V * lse - sum_x) + z_loss * lse * lse
    tl.store(LOSS + row, tl.where(keep, loss, 0.0))
    tl.store(NLL + row, tl.where(keep, nll, 0.0))
    tl.store(LSE + row, lse)


@triton.jit
def ce_bwd_kernel(LOGITS, TARGET, LSE, GLOSS, GNLL, DLOGITS, stride_row, stride_drow, V, ignore_index,
                  coef_nll, coef_smooth, z_loss, BLOCK_V: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    t = tl.load(TARGET + row).to(tl.int64)
    keep = t != ignore_index
    g_loss = tl.where(keep, tl.load(GLOSS + row), 0.0)
    g_nll = tl.where(keep, tl.load(GNLL + row), 0.0)
    lse = tl.load(LSE + row)
    p_coef = g_loss * (coef_nll + coef_smooth * V + 2.0 * z_loss * lse) + g_nll
    target_coef = g_loss * coef_nll + g_nll
    const = g_loss * coef_smooth
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        ok = cols < V
        x = tl.load(LOGITS + row * stride_row + cols, mask=ok, other=0.0).to(tl.float32)
        d = p_coef * tl.exp(x - lse) - const - tl.where(cols == t, target_coef, 0.0)
        tl.store(DLOGITS + row * stride_drow + cols, d.to(DLOGITS.dtype.element_ty), mask=ok)


def _launch(V: int) -> dict:
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return dict(BLOCK_V=128)
    return dict(BLOCK_V=min(triton.next_power_of_2(V), 8192), num_warps=16)


def rows_forward(logits_NV, target_N, *, ignore_index, coef_nll, coef_smooth, z_loss):
    """-> (loss_N, nll_N, lse_N) in fp32; zero loss/nll where target == ignore_index."""
    N, V = logits_NV.shape
    loss, nll, lse = (_empty(N, device=logits_NV.device, dtype=torch.float32) for _ in range(3))
    if N:
        ce_fwd_kernel[(N,)](logits_NV, target_N, loss, nll, lse, logits_NV.stride(0), V, ignore_index,
                            coef_nll, coef_smooth, z_loss, **_launch(V))
    return loss, nll, lse


def rows_backward(logits_NV, target_N, lse_N, g_loss_N, g_nll_N, *, ignore_index, coef_nll, coef_smooth, z_loss,
                  out=None):
    """dL/dlogits for upstream per-row grads (fp32); `out` may alias logits_NV (in place)."""
    N, V = logits_NV.shape
    dlogits = _empty_like(logits_NV) if out is None else out
    if N:
        ce_bwd_kernel[(N,)](logits_NV, target_N, lse_N, g_loss_N, g_nll_N, dlogits, logits_NV.stride(0),
                            dlogits.stride(0), V, ignore_index, coef_nll, coef_smooth, z_loss, **_launch(V))
    return dlogits
