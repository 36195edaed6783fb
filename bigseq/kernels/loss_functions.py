"""Autograd functions for the loss, generic over a row backend (Triton or CUDA).

A backend is a module with ``rows_forward(logits_NV, target_N, **opts) -> (loss, nll, lse)``
and ``rows_backward(logits_NV, target_N, lse_N, g_loss_N, g_nll_N, out=None, **opts)``,
where opts = ignore_index, coef_nll, coef_smooth, z_loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bigseq.kernels import cpu_bf16
from bigseq.kernels.reference import reduce_rows, smoothing_coefficients

# allocation seam: tests poison these so a row the chunk loop forgets shows up as NaN
_empty, _empty_like = torch.empty, torch.empty_like


def _row_opts(V, ignore_index, label_smoothing, smoothing, z_loss) -> dict:
    coef_nll, coef_smooth = smoothing_coefficients(label_smoothing, smoothing, V)
    return dict(ignore_index=int(ignore_index), coef_nll=float(coef_nll), coef_smooth=float(coef_smooth),
                z_loss=float(z_loss))


def _grad_or_zeros(g, like):
    return torch.zeros_like(like) if g is None else g.float().contiguous()


class _CrossEntropyRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits_NV, target_N, backend, opts):
        loss, nll, lse = backend.rows_forward(logits_NV, target_N, **opts)
        ctx.save_for_backward(logits_NV, target_N, lse)
        ctx.backend, ctx.opts = backend, opts
        ctx.set_materialize_grads(False)
        return loss, nll

    @staticmethod
    def backward(ctx, g_loss, g_nll):
        logits_NV, target_N, lse = ctx.saved_tensors
        dlogits = ctx.backend.rows_backward(logits_NV, target_N, lse, _grad_or_zeros(g_loss, lse),
                                            _grad_or_zeros(g_nll, lse), **ctx.opts)
        return dlogits, None, None, None


def cross_entropy(backend, logits, target, *, ignore_index, label_smoothing, smoothing, z_loss, reduction):
    """logits (..., V), target (...) -> (loss, nll_loss) in fp32, through `backend`'s row kernels."""
    V = logits.shape[-1]
    logits_NV = logits.reshape(-1, V)
    if logits_NV.stride(-1) != 1:
        logits_NV = logits_NV.contiguous()
    target_N = target.reshape(-1).contiguous()
    opts = _row_opts(V, ignore_index, label_smoothing, smoothing, z_loss)
    loss, nll = _CrossEntropyRows.apply(logits_NV, target_N, backend, opts)
    if reduction == "none":
        return loss.view(target.shape), nll.view(target.shape)
    return reduce_rows(loss, nll, target_N != ignore_index, reduction)


def default_chunk_rows(N: int, V: int, D: int) -> int:
    """Rows per chunk so a chunk's logits (rows, V) are about as large as the hidden states (N, D)."""
    rows = max(1, -(-N // max(1, -(-V // D))))
    return 1 << (rows - 1).bit_length()


def _run_chunks(backend, opts, hidden_ND, weight_VD, bias_V, target_N, chunk, grad_rows=None, lse_N=None):
    """Loss rows chunk by chunk; with grad_rows(slice) -> (g_loss, g_nll) also (dh, dW, db).

    Each chunk's logits are overwritten by their gradient, then dropped: at most one
    (chunk, V) logits block lives at a time. dW/db accumulate in fp32.
    """
    N, V = hidden_ND.shape[0], weight_VD.shape[0]
    f32 = dict(device=hidden_ND.device, dtype=torch.float32)
    loss, nll = _empty(N, **f32), _empty(N, **f32)
    lse = _empty(N, **f32) if lse_N is None else lse_N
    grads = None
    if grad_rows is not None:
        dh = _empty_like(hidden_ND)
        dW = torch.zeros(V, hidden_ND.shape[1], **f32)
        db = torch.zeros(V, **f32) if bias_V is not None else None
        grads = (dh, dW, db)
    w32 = b32 = None
    if cpu_bf16.routes_to_fp32(hidden_ND) and weight_VD.dtype is torch.bfloat16:  # see cpu_bf16: faster there
        w32, b32 = weight_VD.float(), None if bias_V is None else bias_V.float()
    for i in range(0, N, chunk):
        rows = slice(i, min(N, i + chunk))
        h = hidden_ND[rows]
        logits = F.linear(h, weight_VD, bias_V) if w32 is None else F.linear(h.float(), w32, b32).to(h.dtype)
        if lse_N is None:
            loss[rows], nll[rows], lse[rows] = backend.rows_forward(logits, target_N[rows], **opts)
        if grad_rows is None:
            continue
        g_loss, g_nll = grad_rows(rows)
        d = backend.rows_backward(logits, target_N[rows], lse[rows], g_loss, g_nll, out=logits, **opts)
        if w32 is not None:  # the fp32 products; dW accumulates them without rounding to bf16 first
            d32 = d.float()
            dh[rows] = d32 @ w32
            dW.addmm_(d32.t(), h.float())
        else:
            dh[rows] = d @ weight_VD
            if d.dtype == torch.float32:
                dW.addmm_(d.t(), h)
            else:
                dW.add_(d.t() @ h)
        if db is not None:
            db.add_(d.sum(0, dtype=torch.float32))
    return loss, nll, lse, grads


class _LinearCrossEntropy(torch.autograd.Function):
    """sum/mean: gradients computed during the forward (no second pass); none: recomputed in backward."""

    @staticmethod
    def forward(ctx, hidden_ND, weight_VD, bias_V, target_N, backend, opts, reduction, chunk):
        ctx.set_materialize_grads(False)
        ctx.backend, ctx.opts, ctx.reduction, ctx.chunk = backend, opts, reduction, chunk
        ctx.has_bias = bias_V is not None
        ctx.loss_is_nll = opts["coef_smooth"] == 0.0 and opts["z_loss"] == 0.0
        needs_grad = any(ctx.needs_input_grad[:3])
        keep = target_N != opts["ignore_index"]
        if reduction == "none" or not needs_grad:
            loss, nll, lse, _ = _run_chunks(backend, opts, hidden_ND, weight_VD, bias_V, target_N, chunk)
            if reduction == "none":
                ctx.save_for_backward(hidden_ND, weight_VD, bias_V, target_N, lse)
            return reduce_rows(loss, nll, keep, reduction)
        row_grad = 1.0 / keep.sum().clamp(min=1).float() if reduction == "mean" else torch.ones((), device=keep.device)
        ones = row_grad.expand(chunk).contiguous()
        zeros = torch.zeros(chunk, device=keep.device)

        def grad_rows(rows):
            n = rows.stop - rows.start
            return ones[:n], zeros[:n]

        loss, nll, _, grads = _run_chunks(backend, opts, hidden_ND, weight_VD, bias_V, target_N, chunk, grad_rows)
        ctx.save_for_backward(*grads[:2], *grads[2:] if ctx.has_bias else ())
        ctx.dtypes = (weight_VD.dtype, bias_V.dtype if ctx.has_bias else None)
        return reduce_rows(loss, nll, keep, reduction)

    @staticmethod
    def backward(ctx, g_loss, g_nll):
        if ctx.reduction == "none":
            return _LinearCrossEntropy._recompute_backward(ctx, g_loss, g_nll)
        if g_nll is not None:
            if not ctx.loss_is_nll:
                raise RuntimeError("linear_cross_entropy: with reduction 'sum'/'mean' only `loss` is differentiable "
                                   "when label smoothing or z-loss is on; backpropagate `loss`, log `nll_loss`")
            g_loss = g_nll if g_loss is None else g_loss + g_nll
        if g_loss is None:
            return (None,) * 8
        dh, dW, *db = ctx.saved_tensors
        g = g_loss.float()
        dW = (dW * g).to(ctx.dtypes[0])
        db = (db[0] * g).to(ctx.dtypes[1]) if db else None
        return (dh * g).to(dh.dtype), dW, db, None, None, None, None, None

    @staticmethod
    def _recompute_backward(ctx, g_loss, g_nll):
        hidden_ND, weight_VD, bias_V, target_N, lse = ctx.saved_tensors
        g_loss, g_nll = _grad_or_zeros(g_loss, lse), _grad_or_zeros(g_nll, lse)
        _, _, _, (dh, dW, db) = _run_chunks(ctx.backend, ctx.opts, hidden_ND, weight_VD, bias_V, target_N, ctx.chunk,
                                            lambda rows: (g_loss[rows], g_nll[rows]), lse_N=lse)
        db = db.to(bias_V.dtype) if db is not None else None
        return dh, dW.to(weight_VD.dtype), db, None, None, None, None, None


def linear_cross_entropy(backend, hidden, weight, target, *, bias=None, ignore_index, label_smoothing, smoothing,
                         z_loss, reduction, chunk_rows=None):
    """hidden (..., D), weight (V, D), target (...) -> (loss, nll_loss), logits never whole."""
    D, V = hidden.shape[-1], weight.shape[0]
    hidden_ND = hidden.reshape(-1, D)
    target_N = target.reshape(-1).contiguous()
    chunk = chunk_rows or default_chunk_rows(hidden_ND.shape[0], V, D)
    opts = _row_opts(V, ignore_index, label_smoothing, smoothing, z_loss)
    loss, nll = _LinearCrossEntropy.apply(hidden_ND, weight, bias, target_N, backend, opts, reduction, chunk)
    if reduction == "none":
        return loss.view(target.shape), nll.view(target.shape)
    return loss, nll
