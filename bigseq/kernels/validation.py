"""Argument checks run before any kernel launch: a ValueError naming the argument.

A bad shape, dtype or index must never reach a kernel, where it would become a
silent wrong result or a device-side assert.
"""

from __future__ import annotations

from typing import Optional

import torch

IMPLS = ("auto", "torch", "triton", "cuda")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_impl(impl: str) -> None:
    if impl not in IMPLS:
        raise ValueError(f"impl: expected one of {IMPLS}, got {impl!r}")


def check_tensor(name: str, t, *, ndim: Optional[int] = None, dtypes=None, device=None) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dims, got shape {tuple(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        raise ValueError(f"{name}: expected dtype in {[str(d) for d in dtypes]}, got {t.dtype}")
    if device is not None and t.device != device:
        raise ValueError(f"{name}: expected device {device} (like the first input), got {t.device}")


def check_attention(q, k, v, *, causal, softmax_scale, cu_seqlens, max_seqlen) -> Optional[int]:
    """Validate attention inputs; return the longest packed document (None when padded)."""
    packed = cu_seqlens is not None
    ndim = 3 if packed else 4
    layout = "(T, H, D) with cu_seqlens" if packed else "(B, S, H, D)"
    check_tensor("q", q, dtypes=FLOAT_DTYPES)
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t, dtypes=(q.dtype,), device=q.device)
        if t.dim() != ndim:
            raise ValueError(f"{name}: expected {layout}, got shape {tuple(t.shape)}")
        if t.numel() == 0:
            raise ValueError(f"{name}: expected a non-empty tensor, got shape {tuple(t.shape)}")
    if k.shape != v.shape:
        raise ValueError(f"v: expected the shape of k {tuple(k.shape)}, got {tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"k: expected head dim {q.shape[-1]} (as q), got {k.shape[-1]}")
    hq, hkv = q.shape[-2], k.shape[-2]
    if hq % hkv != 0:
        raise ValueError(f"k: number of query heads {hq} must be a multiple of key/value heads {hkv}")
    if softmax_scale is not None and not (isinstance(softmax_scale, (int, float)) and softmax_scale > 0):
        raise ValueError(f"softmax_scale: expected a positive float or None, got {softmax_scale!r}")
    if not packed:
        if max_seqlen is not None:
            raise ValueError("max_seqlen: only meaningful with cu_seqlens (packed layout); pass None")
        if q.shape[0] != k.shape[0]:
            raise ValueError(f"k: expected batch size {q.shape[0]} (as q), got {k.shape[0]}")
        if causal and q.shape[1] > k.shape[1]:
            raise ValueError(f"q: causal attention needs at most as many queries as keys, "
                             f"got {q.shape[1]} queries and {k.shape[1]} keys")
        return None
    if q.shape[0] != k.shape[0]:
        raise ValueError(f"k: expected {q.shape[0]} packed tokens (as q), got {k.shape[0]}")
    return check_cu_seqlens(cu_seqlens, total=q.shape[0], device=q.device, max_seqlen=max_seqlen)


def check_softcap(softcap) -> None:
    if softcap is not None and (isinstance(softcap, bool) or not isinstance(softcap, (int, float)) or softcap <= 0):
        raise ValueError(f"softcap: expected a positive float or None, got {softcap!r}")


def check_attention_masks(q, k, *, causal, window, key_padding_mask, cu_seqlens, impl: str,
                          softcap=None) -> None:
    """The torch-only options: a causal sliding window, a key padding mask and logit soft-capping."""
    check_softcap(softcap)
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window: expected a positive number of keys or None, got {window!r}")
        if not causal:
            raise ValueError("window: a sliding window is causal; pass causal=True or window=None")
    if key_padding_mask is not None:
        if cu_seqlens is not None:
            raise ValueError("key_padding_mask: packed documents (cu_seqlens) have no padding; pass None")
        check_tensor("key_padding_mask", key_padding_mask, ndim=2, dtypes=(torch.bool,), device=q.device)
        if tuple(key_padding_mask.shape) != tuple(k.shape[:2]):
            raise ValueError(f"key_padding_mask: expected (B, Sk) = {tuple(k.shape[:2])}, "
                             f"got {tuple(key_padding_mask.shape)}")
    for name, value in (("window", window), ("key_padding_mask", key_padding_mask), ("softcap", softcap)):
        if value is not None and impl in ("triton", "cuda"):
            raise ValueError(f"{name}: impl={impl!r} does not support it; use impl='torch' "
                             f"(impl='auto' falls back to torch)")


def check_cu_seqlens(cu_seqlens, *, total: int, device, max_seqlen) -> int:
    check_tensor("cu_seqlens", cu_seqlens, ndim=1, dtypes=(torch.int32,), device=device)
    if cu_seqlens.numel() < 2:
        raise ValueError(f"cu_seqlens: expected at least 2 entries (B+1), got {cu_seqlens.numel()}")
    bounds = cu_seqlens.tolist()
    if bounds[0] != 0:
        raise ValueError(f"cu_seqlens: expected to start at 0, got {bounds[0]}")
    if any(b > a for a, b in zip(bounds[1:], bounds[:-1])):
        raise ValueError(f"cu_seqlens: expected non-decreasing offsets, got {bounds}")
    if bounds[-1] != total:
        raise ValueError(f"cu_seqlens: expected to end at the number of packed tokens {total}, got {bounds[-1]}")
    longest = max(b - a for a, b in zip(bounds[:-1], bounds[1:]))
    if max_seqlen is not None and max_seqlen < longest:
        raise ValueError(f"max_seqlen: {max_seqlen} is shorter than the longest document ({longest})")
    return longest


def check_cross_entropy(logits, target, *, ignore_index, label_smoothing, smoothing, z_loss, reduction,
                        vocab_size: Optional[int] = None) -> None:
    """logits (..., V) float, target (...) integer with values in [0, V) or ignore_index."""
    if logits is not None:
        check_tensor("logits", logits, dtypes=FLOAT_DTYPES)
        check_tensor("target", target, device=logits.device)
        if logits.dim() < 1 or target.shape != logits.shape[:-1]:
            raise ValueError(f"target: expected shape {tuple(logits.shape[:-1])} (logits without the vocab dim), "
                             f"got {tuple(target.shape)}")
    check_tensor("target", target, dtypes=(torch.int64, torch.int32))
    V = vocab_size if vocab_size is not None else logits.shape[-1]
    if smoothing not in ("fairseq", "uniform"):
        raise ValueError(f"smoothing: expected 'fairseq' or 'uniform', got {smoothing!r}")
    if reduction not in ("sum", "mean", "none"):
        raise ValueError(f"reduction: expected 'sum', 'mean' or 'none', got {reduction!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1), got {label_smoothing}")
    if smoothing == "fairseq" and label_smoothing > 0 and V < 2:
        raise ValueError("label_smoothing: fairseq smoothing needs a vocabulary of at least 2 classes")
    if z_loss < 0:
        raise ValueError(f"z_loss: expected a non-negative weight, got {z_loss}")
    bad = (target != ignore_index) & ((target < 0) | (target >= V))
    if bool(bad.any()):
        first = int(target[bad][0])
        raise ValueError(f"target: expected class indices in [0, {V}) or ignore_index={ignore_index}, "
                         f"got {first}")


def check_linear_cross_entropy(hidden, weight, target, bias, **ce_kwargs) -> None:
    check_tensor("hidden", hidden, dtypes=FLOAT_DTYPES)
    check_tensor("weight", weight, ndim=2, dtypes=(hidden.dtype,), device=hidden.device)
    if hidden.dim() < 1 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"hidden: expected last dim {weight.shape[1]} (weight is (V, D) = {tuple(weight.shape)}), "
                         f"got shape {tuple(hidden.shape)}")
    if bias is not None:
        check_tensor("bias", bias, ndim=1, dtypes=(hidden.dtype,), device=hidden.device)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"bias: expected shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    check_tensor("target", target, device=hidden.device)
    if target.shape != hidden.shape[:-1]:
        raise ValueError(f"target: expected shape {tuple(hidden.shape[:-1])}, got {tuple(target.shape)}")
    check_cross_entropy(None, target, vocab_size=weight.shape[0], **ce_kwargs)


def check_decode_attention(q, k_cache, v_cache, cache_seqlens) -> None:
    """q (B, Hq, D), caches (B, S, Hkv, D), cache_seqlens (B,) int32 in [1, S] or None (all S)."""
    check_tensor("q", q, ndim=3, dtypes=FLOAT_DTYPES)
    for name, t in (("k_cache", k_cache), ("v_cache", v_cache)):
        check_tensor(name, t, ndim=4, dtypes=(q.dtype,), device=q.device)
        if t.shape[0] != q.shape[0] or t.shape[3] != q.shape[2] or q.shape[1] % t.shape[2]:
            raise ValueError(f"{name}: expected (B={q.shape[0]}, S, Hkv dividing {q.shape[1]}, D={q.shape[2]}), "
                             f"got {tuple(t.shape)}")
    if k_cache.shape != v_cache.shape:
        raise ValueError(f"v_cache: expected the shape of k_cache {tuple(k_cache.shape)}, got {tuple(v_cache.shape)}")
    if cache_seqlens is None:
        return
    check_tensor("cache_seqlens", cache_seqlens, ndim=1, dtypes=(torch.int32,), device=q.device)
    if cache_seqlens.shape[0] != q.shape[0]:
        raise ValueError(f"cache_seqlens: expected {q.shape[0]} entries, got {cache_seqlens.shape[0]}")
    if bool(((cache_seqlens < 1) | (cache_seqlens > k_cache.shape[1])).any()):
        raise ValueError(f"cache_seqlens: expected lengths in [1, {k_cache.shape[1]}], got {cache_seqlens.tolist()}")
