"""Autograd wrapper around the Triton FlashAttention kernels (padded and packed layouts)."""

from __future__ import annotations

import math
import os

import torch
import triton

from bigseq.kernels.triton.attention_kernels import LOG2E, attn_bwd_dkdv_kernel, attn_bwd_dq_kernel, attn_fwd_kernel

SUPPORTED_HEAD_DIMS = (32, 64, 128, 256)
# allocation seam: tests poison these so an element a kernel forgets to write shows up as NaN
_empty, _empty_like = torch.empty, torch.empty_like


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _launch_options(q: torch.Tensor, head_dim: int, backward: bool) -> dict:
    """Block sizes, warps and dot precision for this dtype, head dim and pass."""
    if _interpreted():  # small blocks so tiny test shapes still span several blocks
        opts = dict(BLOCK_M=16, BLOCK_N=16)
    elif head_dim <= 64:
        opts = dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3) if backward else \
            dict(BLOCK_M=128, BLOCK_N=64, num_warps=4, num_stages=3)
    elif head_dim <= 128:
        opts = dict(BLOCK_M=64, BLOCK_N=64, num_warps=8, num_stages=2) if backward else \
            dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=3)
    else:
        opts = dict(BLOCK_M=32, BLOCK_N=32, num_warps=4, num_stages=1) if backward else \
            dict(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=2)
    fp32 = q.dtype in (torch.float32, torch.float64)
    opts["DOT_F32"] = _interpreted() and q.dtype == torch.bfloat16
    opts["PRECISION"] = "ieee" if fp32 else "tf32"
    return opts


class _Layout:
    """Strides as (batch, seq, head) plus lengths, for the padded or packed layout."""

    def __init__(self, q, k, cu_seqlens, max_seqlen):
        self.packed = cu_seqlens is not None
        if self.packed:
            self.batch = cu_seqlens.numel() - 1
            self.seqlen_q = self.seqlen_k = max_seqlen
            self.total_q = q.shape[0]
        else:
            self.batch, self.seqlen_q = q.shape[0], q.shape[1]
            self.seqlen_k = k.shape[1]
        self.heads_q, self.heads_kv, self.head_dim = q.shape[-2], k.shape[-2], q.shape[-1]
        self.group = self.heads_q // self.heads_kv

    def strides(self, t):
        return (0, t.stride(0), t.stride(1)) if self.packed else (t.stride(0), t.stride(1), t.stride(2))

    def new_lse(self, q):
        """Base-2 LSE, (B, Hq, S) padded or (Hq, T) packed; returned with its (batch, head) strides."""
        if self.packed:
            lse = _empty(self.heads_q, self.total_q, device=q.device, dtype=torch.float32)
            return lse, (0, lse.stride(0))
        lse = _empty(self.batch, self.heads_q, self.seqlen_q, device=q.device, dtype=torch.float32)
        return lse, (lse.stride(0), lse.stride(1))


def _forward(q, k, v, causal, scale, cu_seqlens, lay):
    out = _empty_like(q)
    lse2, lse_strides = lay.new_lse(q)
    cu = cu_seqlens if lay.packed else lse2  # unused pointer when padded
    opts = _launch_options(q, lay.head_dim, backward=False)
    grid = (triton.cdiv(lay.seqlen_q, opts["BLOCK_M"]), lay.batch * lay.heads_q)
    attn_fwd_kernel[grid](q, k, v, out, lse2, cu, *lay.strides(q), *lay.strides(k), *lay.strides(v),
                          *lay.strides(out), *lse_strides, lay.seqlen_q, lay.seqlen_k, lay.heads_q, lay.group,
                          scale * LOG2E, CAUSAL=causal, PACKED=lay.packed, HEAD_DIM=lay.head_dim, **opts)
    return out, lse2, lse_strides


def _backward(dout, q, k, v, out, lse2, lse_strides, causal, scale, cu_seqlens, lay):
    # delta = rowsum(dO * O), laid out like the LSE
    delta = (out.float() * dout.float()).sum(-1)
    delta = delta.t().contiguous() if lay.packed else delta.transpose(1, 2).contiguous()
    dq, dk, dv = _empty_like(q), _empty_like(k), _empty_like(v)
    cu = cu_seqlens if lay.packed else lse2
    opts = _launch_options(q, lay.head_dim, backward=True)
    common = dict(CAUSAL=causal, PACKED=lay.packed, HEAD_DIM=lay.head_dim, **opts)
    in_strides = (*lay.strides(q), *lay.strides(k), *lay.strides(v), *lay.strides(dout), *lse_strides)
    grid_kv = (triton.cdiv(lay.seqlen_k, opts["BLOCK_N"]), lay.batch * lay.heads_kv)
    attn_bwd_dkdv_kernel[grid_kv](q, k, v, dout, lse2, delta, dk, dv, cu, *in_strides,
                                  *lay.strides(dk), *lay.strides(dv), lay.seqlen_q, lay.seqlen_k,
                                  lay.heads_kv, lay.group, scale, scale * LOG2E, **common)
    grid_q = (triton.cdiv(lay.seqlen_q, opts["BLOCK_M"]), lay.batch * lay.heads_q)
    attn_bwd_dq_kernel[grid_q](q, k, v, dout, lse2, delta, dq, cu, *in_strides, *lay.strides(dq),
                               lay.seqlen_q, lay.seqlen_k, lay.heads_q, lay.group, scale, scale * LOG2E, **common)
    return dq, dk, dv


class FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, scale, cu_seqlens, max_seqlen):
        q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
        lay = _Layout(q, k, cu_seqlens, max_seqlen)
        out, lse2, lse_strides = _forward(q, k, v, causal, scale, cu_seqlens, lay)
        ctx.save_for_backward(q, k, v, out, lse2, cu_seqlens)
        ctx.args = (causal, scale, lay, lse_strides)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse2, cu_seqlens = ctx.saved_tensors
        causal, scale, lay, lse_strides = ctx.args
        dout = dout if dout.stride(-1) == 1 else dout.contiguous()
        dq, dk, dv = _backward(dout, q, k, v, out, lse2, lse_strides, causal, scale, cu_seqlens, lay)
        return dq, dk, dv, None, None, None, None


def flash_attention(q, k, v, *, causal: bool, softmax_scale, cu_seqlens=None, max_seqlen=None):
    """Same contract as bigseq.kernels.attention (inputs already validated)."""
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    return FlashAttention.apply(q, k, v, causal, float(scale), cu_seqlens, max_seqlen)
