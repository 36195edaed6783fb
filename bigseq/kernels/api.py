"""Public kernel functions: validate, pick an implementation, call it.

impl: "torch" = the reference (bigseq.kernels.reference), the CPU default;
"triton" = bigseq.kernels.triton (CUDA tensors, or CPU tensors under TRITON_INTERPRET=1);
"cuda" = csrc/ ops (cross-entropy, decode attention); "auto" = the fastest available
for the device: on CPU torch (the losses through bigseq.kernels.cpu_rows: the reference's
forward numbers, computed a cache-sized chunk of rows at a time); on CUDA the CUDA op,
then Triton, then torch. When auto
skips an unavailable CUDA op it warns once; an explicit impl that cannot run raises
KernelUnavailableError. Triton and the CUDA extension are imported only when chosen.
"""

from __future__ import annotations

import importlib.util
import os
import warnings

import torch

from bigseq.errors import BigseqError
from bigseq.kernels import cpu_bf16, cpu_rows, loss_functions, reference, validation

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_warned: set[str] = set()


class KernelUnavailableError(BigseqError):
    """An explicitly requested impl cannot run here (no device, toolkit, or package)."""


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def triton_status(device: torch.device) -> tuple[bool, str]:
    """(usable, reason) for the Triton kernels on tensors of `device`."""
    if importlib.util.find_spec("triton") is None:
        return False, "triton is not installed (pip install triton)"
    if device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        return True, ""
    return False, f"Triton kernels need CUDA tensors (got {device.type}) or TRITON_INTERPRET=1"


def cuda_status(device: torch.device) -> tuple[bool, str]:
    """(usable, reason) for the csrc/ CUDA ops; builds or loads them on first success."""
    if device.type != "cuda":
        return False, f"CUDA ops need CUDA tensors, got {device.type}"
    from bigseq.kernels.cuda import builder

    ok, why = builder.is_compatible()
    if ok:
        try:
            builder.load()
        except Exception as e:  # a failed JIT build must not take training down under impl="auto"
            return False, f"building the CUDA ops failed: {str(e).strip().splitlines()[-1] if str(e) else e!r}"
    return ok, why


def _require(impl: str, status: tuple[bool, str], what: str) -> None:
    ok, why = status
    if not ok:
        raise KernelUnavailableError(f"impl={impl!r} for {what} cannot run: {why}; use impl='auto' or 'torch'")


def _check_kernel_dtype(name: str, t: torch.Tensor, impl: str) -> None:
    if t.dtype not in KERNEL_DTYPES:
        raise ValueError(f"{name}: impl={impl!r} supports {[str(d) for d in KERNEL_DTYPES]}, got {t.dtype}")


def _loss_backend(x: torch.Tensor, impl: str, what: str):
    """The row backend module for the loss (CUDA, Triton or CPU rows), or None for the torch reference."""
    if impl == "auto" and x.device.type == "cpu" and x.dtype in KERNEL_DTYPES:
        return cpu_rows
    if impl == "torch" or (impl == "auto" and (x.device.type != "cuda" or x.dtype not in KERNEL_DTYPES)):
        return None
    if impl != "auto":
        _check_kernel_dtype("logits" if what == "cross_entropy" else "hidden", x, impl)
    if impl in ("cuda", "auto"):
        status = cuda_status(x.device)
        if status[0]:
            from bigseq.kernels.cuda import ops
            return ops
        if impl == "cuda":
            _require(impl, status, what)
        _warn_once(f"cuda:{what}", f"bigseq: the CUDA {what} op is unavailable ({status[1]}); falling back")
    status = triton_status(x.device)
    if impl == "triton":
        _require(impl, status, what)
    if not status[0]:
        return None
    from bigseq.kernels.triton import cross_entropy as triton_ce
    return triton_ce


def attention(q, k, v, *, causal: bool = True, softmax_scale=None, cu_seqlens=None, max_seqlen=None,
              window=None, key_padding_mask=None, softcap=None, impl: str = "auto"):
    """Padded q (B, Sq, Hq, D), k/v (B, Sk, Hkv, D) -> (B, Sq, Hq, D), Hq % Hkv == 0;
    or packed q/k/v (T, H, D) with cu_seqlens (int32, B+1) -> (T, Hq, D).

    A causal mask is aligned to the end of the keys; packed documents never attend across.
    window (causal only): each query sees its last ``window`` keys, itself included.
    key_padding_mask (B, Sk) bool: True at keys no query attends to.
    softcap: the scaled scores become tanh(s / softcap) * softcap before the mask (Gemma 2).
    The three are torch-only: impl="auto" falls back to torch, "triton"/"cuda" refuse them.
    """
    validation.check_impl(impl)
    longest = validation.check_attention(q, k, v, causal=causal, softmax_scale=softmax_scale,
                                         cu_seqlens=cu_seqlens, max_seqlen=max_seqlen)
    validation.check_attention_masks(q, k, causal=causal, window=window, key_padding_mask=key_padding_mask,
                                     cu_seqlens=cu_seqlens, impl=impl, softcap=softcap)
    if impl == "cuda":
        return _cuda_decode_via_attention(q, k, v, cu_seqlens, softmax_scale)
    if impl == "auto":
        usable = q.device.type == "cuda" and triton_status(q.device)[0] and q.dtype in KERNEL_DTYPES
        masked = window is not None or key_padding_mask is not None or softcap is not None
        impl = "triton" if usable and not masked and q.shape[-1] in (32, 64, 128, 256) else "torch"
    if impl == "torch":
        # SDPA's CPU bf16 kernel runs on bf16 GEMMs: through fp32 ones where those are faster (cpu_bf16)
        upcast = cpu_bf16.routes_to_fp32(q)
        out = reference.attention(*((t.float() for t in (q, k, v)) if upcast else (q, k, v)), causal=causal,
                                  softmax_scale=softmax_scale, cu_seqlens=cu_seqlens, window=window,
                                  key_padding_mask=key_padding_mask, softcap=softcap)
        return out.to(q.dtype) if upcast else out
    _require(impl, triton_status(q.device), "attention")
    _check_kernel_dtype("q", q, impl)
    from bigseq.kernels.triton.attention import SUPPORTED_HEAD_DIMS, flash_attention

    if q.shape[-1] not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"q: impl='triton' supports head dims {SUPPORTED_HEAD_DIMS}, got {q.shape[-1]}")
    return flash_attention(q, k, v, causal=causal, softmax_scale=softmax_scale, cu_seqlens=cu_seqlens,
                           max_seqlen=max_seqlen or longest)


def _cuda_decode_via_attention(q, k, v, cu_seqlens, softmax_scale):
    """impl='cuda' attention = the decode kernel: one query token per sequence, no gradient."""
    if cu_seqlens is not None or q.shape[1] != 1 or (torch.is_grad_enabled() and
                                                     any(t.requires_grad for t in (q, k, v))):
        raise KernelUnavailableError("impl='cuda' attention covers decoding only (padded, one query token, no "
                                     "gradient); use impl='triton' or 'torch' for training")
    return decode_attention(q[:, 0], k, v, None, softmax_scale=softmax_scale, impl="cuda").unsqueeze(1)


def decode_attention(q, k_cache, v_cache, cache_seqlens=None, *, softmax_scale=None, softcap=None,
                     impl: str = "auto"):
    """q (B, Hq, D), k/v cache (B, S, Hkv, D), cache_seqlens (B,) int32 in [1, S] -> (B, Hq, D).
    cache_seqlens None: every row attends to all S entries (beam search, equal lengths; no mask built).

    Generation's one-token step against a KV cache; forward only. softcap (as in attention) is
    torch-only: impl="auto" falls back to torch, "cuda" refuses it.
    """
    validation.check_impl(impl)
    validation.check_decode_attention(q, k_cache, v_cache, cache_seqlens)
    validation.check_softcap(softcap)
    if impl == "triton":
        raise KernelUnavailableError("impl='triton' has no decode-attention kernel; use 'cuda', 'auto' or 'torch'")
    if softcap is not None:
        if impl == "cuda":
            raise ValueError("softcap: impl='cuda' does not support it; use impl='torch' "
                             "(impl='auto' falls back to torch)")
        return reference.decode_attention(q, k_cache, v_cache, cache_seqlens, softmax_scale=softmax_scale,
                                          softcap=softcap)
    if impl in ("cuda", "auto") and q.device.type == "cuda":
        status = cuda_status(q.device)
        if impl == "cuda":
            _require(impl, status, "decode_attention")
        from bigseq.kernels.cuda.ops import SUPPORTED_HEAD_DIMS
        from bigseq.kernels.cuda.ops import decode_attention as cuda_decode

        if status[0] and q.dtype in KERNEL_DTYPES and q.shape[-1] in SUPPORTED_HEAD_DIMS:
            if cache_seqlens is None:
                cache_seqlens = torch.full((q.shape[0],), k_cache.shape[1], dtype=torch.int32, device=q.device)
            return cuda_decode(q, k_cache, v_cache, cache_seqlens, softmax_scale=softmax_scale)
        if impl == "cuda":
            raise ValueError(f"q: impl='cuda' supports head dims {SUPPORTED_HEAD_DIMS} and fp32/fp16/bf16, "
                             f"got {q.shape[-1]} and {q.dtype}")
        if not status[0]:
            _warn_once("cuda:decode_attention", f"bigseq: the CUDA decode-attention op is unavailable ({status[1]}); "
                                                "falling back to torch")
    elif impl == "cuda":
        _require(impl, cuda_status(q.device), "decode_attention")
    return reference.decode_attention(q, k_cache, v_cache, cache_seqlens, softmax_scale=softmax_scale)


def cross_entropy(logits, target, *, ignore_index: int = -100, label_smoothing: float = 0.0,
                  smoothing: str = "fairseq", z_loss: float = 0.0, reduction: str = "sum", impl: str = "auto"):
    """logits (..., V), target (...) -> (loss, nll_loss), computed in fp32.

    smoothing "fairseq": target 1-eps, others eps/(V-1); "uniform": PyTorch's eps/V on every class.
    z_loss adds z * logsumexp^2. reduction "mean" divides by the number of non-ignored targets.
    """
    validation.check_impl(impl)
    ce = dict(ignore_index=ignore_index, label_smoothing=label_smoothing, smoothing=smoothing, z_loss=z_loss,
              reduction=reduction)
    validation.check_cross_entropy(logits, target, **ce)
    backend = _loss_backend(logits, impl, "cross_entropy")
    if backend is None:
        return reference.cross_entropy(logits, target, **ce)
    return loss_functions.cross_entropy(backend, logits, target, **ce)


def linear_cross_entropy(hidden, weight, target, *, bias=None, ignore_index: int = -100, label_smoothing: float = 0.0,
                         smoothing: str = "fairseq", z_loss: float = 0.0, reduction: str = "sum",
                         impl: str = "auto", chunk_rows=None):
    """hidden (..., D), weight (V, D), bias (V,) or None, target (...) -> (loss, nll_loss).

    The LM head fused with cross_entropy (same options): chunked over tokens so the
    (N, V) logits never exist at once; gradients for hidden, weight and bias. With
    reduction "sum"/"mean" the gradients are computed during the forward, so only
    `loss` is differentiable when smoothing or z-loss is on (nll_loss is for logging).
    chunk_rows overrides the rows per chunk (default: logits chunk ~ hidden size).
    """
    validation.check_impl(impl)
    ce = dict(ignore_index=ignore_index, label_smoothing=label_smoothing, smoothing=smoothing, z_loss=z_loss,
              reduction=reduction)
    validation.check_linear_cross_entropy(hidden, weight, target, bias, **ce)
    backend = _loss_backend(hidden, impl, "linear_cross_entropy")
    if backend is None:
        return reference.linear_cross_entropy(hidden, weight, target, bias=bias, **ce)
    return loss_functions.linear_cross_entropy(backend, hidden, weight, target, bias=bias, chunk_rows=chunk_rows,
                                               **ce)
