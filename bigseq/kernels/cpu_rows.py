"""Cross-entropy rows in torch ops for CPU tensors, a chunk of rows at a time.

The same row-backend contract as the Triton and CUDA ones (``rows_forward``,
``rows_backward``), so the loss autograd functions in ``loss_functions`` run on
CPU too. Working a few rows at a time keeps every fp32 temporary in the L2
cache; the whole-tensor reference instead writes several (N, V) fp32 arrays per
step (and on CPU each fresh one that large is page-faulted in).
The forward computes exactly the reference's numbers (torch.logsumexp per row).

Per row, with a = coef_nll, c = coef_smooth (see reference.smoothing_coefficients):
  loss = a * nll + c * (V * lse - sum_j x_j) + z * lse^2
  dloss/dx_j = (a + c * V + 2 z lse) p_j - a [j == t] - c
  dnll/dx_j  = p_j - [j == t]
"""

from __future__ import annotations

import torch

# rows per chunk: a (rows, V) fp32 block of about this many bytes stays in L2
_CHUNK_BYTES = 1024 * 1024
# allocation seam: tests poison these so an element the chunk loop forgets shows up as NaN
_empty, _empty_like = torch.empty, torch.empty_like


def _chunk_rows(V: int) -> int:
    return max(1, _CHUNK_BYTES // (4 * max(V, 1)))


def rows_forward(logits_NV, target_N, *, ignore_index, coef_nll, coef_smooth, z_loss):
    """-> (loss_N, nll_N, lse_N) in fp32; zero loss/nll where target == ignore_index."""
    N, V = logits_NV.shape
    f32 = dict(device=logits_NV.device, dtype=torch.float32)
    loss, nll, lse = _empty(N, **f32), _empty(N, **f32), _empty(N, **f32)
    keep = target_N != ignore_index
    safe_t = target_N.masked_fill(~keep, 0).long()
    step = _chunk_rows(V)
    for i in range(0, N, step):
        rows = slice(i, min(N, i + step))
        x = logits_NV[rows].float()
        lse_c = torch.logsumexp(x, dim=-1)
        nll_c = lse_c - x.gather(-1, safe_t[rows, None]).squeeze(-1)
        loss_c = nll_c
        if coef_smooth:
            loss_c = coef_nll * nll_c + coef_smooth * (V * lse_c - x.sum(-1))
        if z_loss > 0:
            loss_c = loss_c + z_loss * lse_c.pow(2)
        lse[rows] = lse_c
        torch.mul(loss_c, keep[rows], out=loss[rows])
        torch.mul(nll_c, keep[rows], out=nll[rows])
    return loss, nll, lse


def rows_backward(logits_NV, target_N, lse_N, g_loss_N, g_nll_N, *, ignore_index, coef_nll, coef_smooth, z_loss,
                  out=None):
    """dL/dlogits (in the logits' dtype) for upstream per-row grads; `out` may alias logits_NV (in place)."""
    N, V = logits_NV.shape
    dlogits = _empty_like(logits_NV) if out is None else out
    keep = target_N != ignore_index
    g_loss = g_loss_N.float() * keep
    g_nll = g_nll_N.float() * keep
    p_coef = g_loss * (coef_nll + coef_smooth * V + 2.0 * z_loss * lse_N) + g_nll
    target_coef = (g_loss * coef_nll + g_nll).unsqueeze(-1)
    safe_t = target_N.masked_fill(~keep, 0).long().unsqueeze(-1)
    step = _chunk_rows(V)
    for i in range(0, N, step):
        rows = slice(i, min(N, i + step))
        # fp32 out: compute in place in the output rows; otherwise in an fp32 chunk, then cast
        d = dlogits[rows] if dlogits.dtype == torch.float32 else None
        d = torch.sub(logits_NV[rows].float(), lse_N[rows, None], out=d).exp_().mul_(p_coef[rows, None])
        if coef_smooth:
            d.sub_((g_loss[rows] * coef_smooth).unsqueeze(-1))
        d.scatter_add_(-1, safe_t[rows], -target_coef[rows])
        if d.data_ptr() != dlogits[rows].data_ptr():
            dlogits[rows] = d
    return dlogits
