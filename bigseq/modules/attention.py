"""Self-attention: q/k/v/out projections, optional RoPE, grouped-query heads.

The head size may differ from dim / heads (``head_dim``: Qwen3, Mistral), and
queries and keys may be RMS-normalized before RoPE (``qk_norm``): per head
(Qwen3, Gemma 3) or over the whole projection (OLMo 2; that one needs all the
heads in the layer), with the model's kind of RMSNorm (``qk_norm_kind``: Gemma's
unit-offset one, OLMo 2's fp32 one). Gemma's softmax scale may come from its own
``softmax_scale`` (query_pre_attn_scalar ** -0.5) and its scores may be soft-capped
(``softcap``: tanh(s / cap) * cap before the mask); both reach the decode step too.

Causal (decoder) or bidirectional (encoder), with an optional sliding window,
packed documents (``cu_seqlens``) and a key padding mask. The attention itself
is ``bigseq.kernels.attention`` (B, S, H, D layout), whose causal mask is
aligned to the end of the keys, so a decode step with a KV cache attends to
every cached position. Head counts come from the tensor shapes
(``.view(B, T, -1, head_dim)``), so a layer holding a slice of the heads
works unchanged.

``core_attention`` is the seam for sequence parallelism: None runs
``core_attention`` below; distributed/ may set a callable of the same signature
that exchanges sequence slices for head slices around it (DeepSpeed-Ulysses),
so this module never knows about process groups. Legend: B batch, T time, S keys,
H heads, D dim.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from bigseq import kernels
from bigseq.modules.kv_cache import LayerKVCache
from bigseq.modules.linear import Linear
from bigseq.modules.norms import build_norm
from bigseq.modules.rotary import RopeConfig, RopeCosSin, RotaryEmbedding, apply_rope


def padding_mask_from_lengths(lengths_B: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths of right-padded rows -> (B, max_len) bool, True at padding."""
    return torch.arange(max_len, device=lengths_B.device)[None, :] >= lengths_B[:, None]


QK_NORMS = ("none", "head", "full")


def core_attention(q_BTHD: torch.Tensor, k_BSHD: torch.Tensor, v_BSHD: torch.Tensor, *, causal: bool, impl: str,
                   cu_seqlens: torch.Tensor | None = None, **options) -> torch.Tensor:
    """softmax(q k^T) v over whole rows, or over the documents ``cu_seqlens`` cuts the flattened B * T into."""
    if cu_seqlens is None:
        return kernels.attention(q_BTHD, k_BSHD, v_BSHD, causal=causal, impl=impl, **options)
    packed = [t.flatten(0, 1) for t in (q_BTHD, k_BSHD, v_BSHD)]  # (B * T, H, D)
    out_NHD = kernels.attention(*packed, causal=causal, cu_seqlens=cu_seqlens, impl=impl, **options)
    return out_NHD.view(q_BTHD.shape)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, *, num_kv_heads: int | None = None, bias: bool = True,
                 rope: RopeConfig | None = None, causal: bool = True, window: int | None = None,
                 attention_impl: str = "torch", head_dim: int | None = None, qkv_bias: bool | None = None,
                 out_bias: bool | None = None, qk_norm: str = "none", norm_eps: float = 1e-6,
                 qk_norm_kind: str = "rmsnorm", softmax_scale: float | None = None, softcap: float | None = None):
        """head_dim None: dim // num_heads. qkv_bias / out_bias None: follow ``bias``.
        qk_norm: "none" | "head" (RMSNorm over each head) | "full" (over the whole q or k projection);
        qk_norm_kind: which RMSNorm (bigseq.modules.norms). softmax_scale None: head_dim ** -0.5.
        softcap: cap of the attention scores (None: none)."""
        super().__init__()
        if qk_norm not in QK_NORMS:
            raise ValueError(f"qk_norm {qk_norm!r}: use one of {QK_NORMS}")
        self.head_dim = head_dim or dim // num_heads
        self.causal = causal
        self.window = window
        self.attention_impl = attention_impl
        self.softmax_scale = softmax_scale
        self.softcap = softcap
        self.core_attention = None  # None: core_attention(); see the module docstring
        # cos/sin normally come from the model's forward; a layer run alone computes its own
        self.rotary = RotaryEmbedding(self.head_dim, rope) if rope is not None else None
        q_dim, kv_dim = num_heads * self.head_dim, (num_kv_heads or num_heads) * self.head_dim
        qkv_bias = bias if qkv_bias is None else qkv_bias
        self.q_proj = Linear(dim, q_dim, bias=qkv_bias)
        self.k_proj = Linear(dim, kv_dim, bias=qkv_bias)
        self.v_proj = Linear(dim, kv_dim, bias=qkv_bias)
        self.out_proj = Linear(q_dim, dim, bias=bias if out_bias is None else out_bias)
        self.qk_norm = qk_norm
        if qk_norm != "none":
            widths = (self.head_dim, self.head_dim) if qk_norm == "head" else (q_dim, kv_dim)
            self.q_norm = build_norm(qk_norm_kind, widths[0], norm_eps)
            self.k_norm = build_norm(qk_norm_kind, widths[1], norm_eps)

    def forward(self, x_BTD: torch.Tensor, *, rope: RopeCosSin | None = None, start_pos: int = 0,
                positions: torch.Tensor | None = None, kv_cache: LayerKVCache | None = None,
                cu_seqlens: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D) at positions start_pos.. (or per token: positions (B, T)) -> (B, T, D).

        rope: the model's cos/sin for these positions. cu_seqlens: document boundaries over the
        flattened B * T tokens. key_padding_mask (B, T): True at padding (no KV cache then).
        """
        B, T, _ = x_BTD.shape
        q, k = self._queries_keys(x_BTD)
        v = self.v_proj(x_BTD).view(B, T, -1, self.head_dim)
        if self.rotary is not None:
            if rope is None:
                rope = self.rotary.cos_sin(T, start_pos=start_pos, positions=positions, device=x_BTD.device)
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if kv_cache is not None:
            if cu_seqlens is not None or key_padding_mask is not None:
                raise ValueError("a KV cache takes neither cu_seqlens nor key_padding_mask; decode unpadded rows")
            k, v = kv_cache.update(start_pos, k, v)
            if T == 1:
                return self.out_proj(self._decode_step(q, k, v).reshape(B, T, -1))
        out_BTHD = self._attend(q, k, v, cu_seqlens, key_padding_mask)
        return self.out_proj(out_BTHD.reshape(B, T, -1))

    def _queries_keys(self, x_BTD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q (B, T, H, D) and k (B, T, Hkv, D), normalized as qk_norm says (RoPE comes after)."""
        B, T, _ = x_BTD.shape
        q, k = self.q_proj(x_BTD), self.k_proj(x_BTD)
        if self.qk_norm == "full":
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.view(B, T, -1, self.head_dim), k.view(B, T, -1, self.head_dim)
        if self.qk_norm == "head":
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k

    def _decode_step(self, q_B1HD: torch.Tensor, k_BSHD: torch.Tensor, v_BSHD: torch.Tensor) -> torch.Tensor:
        """One new token against the cache: the split-K decode kernel on CUDA (torch reference elsewhere,
        and wherever a softcap is set)."""
        if self.window is not None:
            k_BSHD, v_BSHD = k_BSHD[:, -self.window:], v_BSHD[:, -self.window:]
        impl = "auto" if self.attention_impl in ("auto", "cuda") else "torch"
        # every row holds as many keys (cache_seqlens None): no lengths to build, check or mask
        return kernels.decode_attention(q_B1HD[:, 0], k_BSHD, v_BSHD, None, softmax_scale=self.softmax_scale,
                                        softcap=self.softcap, impl=impl).unsqueeze(1)

    def _attend(self, q, k, v, cu_seqlens, key_padding_mask) -> torch.Tensor:
        # only the options in use are passed: the kernels' fast paths take none of them
        options = {}
        if self.window is not None:
            options["window"] = self.window
        if self.softmax_scale is not None:
            options["softmax_scale"] = self.softmax_scale
        if self.softcap is not None:
            options["softcap"] = self.softcap
        if key_padding_mask is not None:
            options["key_padding_mask"] = key_padding_mask
        if cu_seqlens is not None:
            options["cu_seqlens"] = cu_seqlens
        attend = self.core_attention or core_attention
        return attend(q, k, v, causal=self.causal, impl=self.attention_impl, **options)
