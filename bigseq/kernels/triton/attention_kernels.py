"""FlashAttention-2-style Triton kernels: forward, and backward as dK/dV + dQ passes.

Legend: M = query block, N = key block, D = head dim. One program owns one query
block (forward, dQ) or one key block (dK/dV) of one head, so every output element
is written by exactly one program: the backward is deterministic (no atomics).
GQA: query head h reads key/value head h // group; the dK/dV program of a key/value
head loops over the `group` query heads that share it, so K/V are never repeated.
Packed layout: program b reads its document bounds from cu_seqlens; the batch
stride is then 0 and positions are offset by the document start.
The log-sum-exp is kept in base 2 (LSE2) because the kernels use exp2.
"""

import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def _dot(a, b, DOT_F32: tl.constexpr, PRECISION: tl.constexpr):
    # the interpreter mis-handles bf16 tl.dot, so operands are widened there
    if DOT_F32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _bounds(CU, b, seqlen_q, seqlen_k, PACKED: tl.constexpr):
    """(start, len_q, len_k) of sequence b: a packed document, or the whole padded row."""
    if PACKED:
        start = tl.load(CU + b)
        length = tl.load(CU + b + 1) - start
        return start, length, length
    return 0, seqlen_q, seqlen_k


@triton.jit
def attn_fwd_kernel(Q, K, V, OUT, LSE2, CU,
                    sqb, sqs, sqh, skb, sks, skh, svb, svs, svh, sob, sos, soh, slb, slh,
                    seqlen_q, seqlen_k, n_heads_q, group, scale_log2,
                    CAUSAL: tl.constexpr, PACKED: tl.constexpr, HEAD_DIM: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    DOT_F32: tl.constexpr, PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // n_heads_q
    h = pid_bh % n_heads_q
    start, len_q, len_k = _bounds(CU, b, seqlen_q, seqlen_k, PACKED)
    if pid_m * BLOCK_M >= len_q:
        return
    diag = len_k - len_q  # causal mask aligned to the end of the keys
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < len_q
    q_MD = tl.load(Q + b * sqb + h * sqh + (start + offs_m)[:, None] * sqs + offs_d[None, :],
                   mask=row_ok[:, None], other=0.0)
    k_base = K + b * skb + (h // group) * skh
    v_base = V + b * svb + (h // group) * svh
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc_MD = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    hi = len_k
    if CAUSAL:
        hi = tl.minimum(len_k, (pid_m + 1) * BLOCK_M + diag)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        col_ok = cols < len_k
        kT_DN = tl.load(k_base + (start + cols)[None, :] * sks + offs_d[:, None], mask=col_ok[None, :], other=0.0)
        s_MN = _dot(q_MD, kT_DN, DOT_F32, PRECISION) * scale_log2
        keep = col_ok[None, :]
        if CAUSAL:
            keep = keep & (cols[None, :] <= offs_m[:, None] + diag)
        s_MN = tl.where(keep, s_MN, float("-inf"))
        # every row has key 0 in its first block, so m_new is finite from the start
        m_new = tl.maximum(m_i, tl.max(s_MN, 1))
        p_MN = tl.math.exp2(s_MN - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p_MN, 1)
        v_ND = tl.load(v_base + (start + cols)[:, None] * svs + offs_d[None, :], mask=col_ok[:, None], other=0.0)
        acc_MD = acc_MD * alpha[:, None] + _dot(p_MN.to(v_ND.dtype), v_ND, DOT_F32, PRECISION)
        m_i = m_new
    acc_MD = acc_MD / l_i[:, None]
    tl.store(LSE2 + b * slb + h * slh + start + offs_m, m_i + tl.math.log2(l_i), mask=row_ok)
    tl.store(OUT + b * sob + h * soh + (start + offs_m)[:, None] * sos + offs_d[None, :],
             acc_MD.to(OUT.dtype.element_ty), mask=row_ok[:, None])


@triton.jit
def attn_bwd_dkdv_kernel(Q, K, V, DO, LSE2, DELTA, DK, DV, CU,
                         sqb, sqs, sqh, skb, sks, skh, svb, svs, svh, sdob, sdos, sdoh, slb, slh,
                         sdkb, sdks, sdkh, sdvb, sdvs, sdvh,
                         seqlen_q, seqlen_k, n_heads_kv, group, scale, scale_log2,
                         CAUSAL: tl.constexpr, PACKED: tl.constexpr, HEAD_DIM: tl.constexpr,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         DOT_F32: tl.constexpr, PRECISION: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // n_heads_kv
    hk = pid_bh % n_heads_kv
    start, len_q, len_k = _bounds(CU, b, seqlen_q, seqlen_k, PACKED)
    if pid_n * BLOCK_N >= len_k:
        return
    diag = len_k - len_q
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    col_ok = offs_n < len_k
    k_ND = tl.load(K + b * skb + hk * skh + (start + offs_n)[:, None] * sks + offs_d[None, :],
                   mask=col_ok[:, None], other=0.0)
    v_ND = tl.load(V + b * svb + hk * svh + (start + offs_n)[:, None] * svs + offs_d[None, :],
                   mask=col_ok[:, None], other=0.0)
    dk_ND = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv_ND = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    lo = 0
    if CAUSAL:  # query rows before (key block start - diag) see none of these keys
        lo = tl.maximum(pid_n * BLOCK_N - diag, 0) // BLOCK_M * BLOCK_M
    for g in range(group):
        h = hk * group + g
        q_base = Q + b * sqb + h * sqh
        do_base = DO + b * sdob + h * sdoh
        l_base = b * slb + h * slh + start
        for start_m in range(lo, len_q, BLOCK_M):
            offs_m = start_m + offs_m0
            row_ok = offs_m < len_q
            q_MD = tl.load(q_base + (start + offs_m)[:, None] * sqs + offs_d[None, :], mask=row_ok[:, None], other=0.0)
            do_MD = tl.load(do_base + (start + offs_m)[:, None] * sdos + offs_d[None, :],
                            mask=row_ok[:, None], other=0.0)
            lse2_M = tl.load(LSE2 + l_base + offs_m, mask=row_ok, other=0.0)
            delta_M = tl.load(DELTA + l_base + offs_m, mask=row_ok, other=0.0)
            s_MN = _dot(q_MD, tl.trans(k_ND), DOT_F32, PRECISION) * scale_log2
            keep = row_ok[:, None] & col_ok[None, :]
            if CAUSAL:
                keep = keep & (offs_n[None, :] <= offs_m[:, None] + diag)
            p_MN = tl.where(keep, tl.math.exp2(s_MN - lse2_M[:, None]), 0.0)
            dv_ND += _dot(tl.trans(p_MN.to(do_MD.dtype)), do_MD, DOT_F32, PRECISION)
            dp_MN = _dot(do_MD, tl.trans(v_ND), DOT_F32, PRECISION)
            ds_MN = p_MN * (dp_MN - delta_M[:, None])
            dk_ND += _dot(tl.trans(ds_MN.to(q_MD.dtype)), q_MD, DOT_F32, PRECISION)
    tl.store(DK + b * sdkb + hk * sdkh + (start + offs_n)[:, None] * sdks + offs_d[None, :],
             (dk_ND * scale).to(DK.dtype.element_ty), mask=col_ok[:, None])
    tl.store(DV + b * sdvb + hk * sdvh + (start + offs_n)[:, None] * sdvs + offs_d[None, :],
             dv_ND.to(DV.dtype.element_ty), mask=col_ok[:, None])


@triton.jit
def attn_bwd_dq_kernel(Q, K, V, DO, LSE2, DELTA, DQ, CU,
                       sqb, sqs, sqh, skb, sks, skh, svb, svs, svh, sdob, sdos, sdoh, slb, slh,
                       sdqb, sdqs, sdqh,
                       seqlen_q, seqlen_k, n_heads_q, group, scale, scale_log2,
                       CAUSAL: tl.constexpr, PACKED: tl.constexpr, HEAD_DIM: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       DOT_F32: tl.constexpr, PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // n_heads_q
    h = pid_bh % n_heads_q
    start, len_q, len_k = _bounds(CU, b, seqlen_q, seqlen_k, PACKED)
    if pid_m * BLOCK_M >= len_q:
        return
    diag = len_k - len_q
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < len_q
    q_MD = tl.load(Q + b * sqb + h * sqh + (start + offs_m)[:, None] * sqs + offs_d[None, :],
                   mask=row_ok[:, None], other=0.0)
    do_MD = tl.load(DO + b * sdob + h * sdoh + (start + offs_m)[:, None] * sdos + offs_d[None, :],
                    mask=row_ok[:, None], other=0.0)
    lse2_M = tl.load(LSE2 + b * slb + h * slh + start + offs_m, mask=row_ok, other=0.0)
    delta_M = tl.load(DELTA + b * slb + h * slh + start + offs_m, mask=row_ok, other=0.0)
    k_base = K + b * skb + (h // group) * skh
    v_base = V + b * svb + (h // group) * svh
    dq_MD = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    hi = len_k
    if CAUSAL:
        hi = tl.minimum(len_k, (pid_m + 1) * BLOCK_M + diag)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        col_ok = offs_n < len_k
        k_ND = tl.load(k_base + (start + offs_n)[:, None] * sks + offs_d[None, :], mask=col_ok[:, None], other=0.0)
        v_ND = tl.load(v_base + (start + offs_n)[:, None] * svs + offs_d[None, :], mask=col_ok[:, None], other=0.0)
        s_MN = _dot(q_MD, tl.trans(k_ND), DOT_F32, PRECISION) * scale_log2
        keep = row_ok[:, None] & col_ok[None, :]
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None] + diag)
        p_MN = tl.where(keep, tl.math.exp2(s_MN - lse2_M[:, None]), 0.0)
        dp_MN = _dot(do_MD, tl.trans(v_ND), DOT_F32, PRECISION)
        ds_MN = p_MN * (dp_MN - delta_M[:, None])
        dq_MD += _dot(ds_MN.to(k_ND.dtype), k_ND, DOT_F32, PRECISION)
    tl.store(DQ + b * sdqb + h * sdqh + (start + offs_m)[:, None] * sdqs + offs_d[None, :],
             (dq_MD * scale).to(DQ.dtype.element_ty), mask=row_ok[:, None])
