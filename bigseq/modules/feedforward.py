"""Position-wise feed-forward blocks: activation MLP (GPT-2/fairseq) and gated ones: SwiGLU (Llama),
GeGLU with the exact gelu, or with its tanh approximation (Gemma's gelu_pytorch_tanh).

``chunks`` K > 1 tiles the block over K slices of the B * T tokens (DeepSpeed's TiledMLP idea).
What saves memory is the pair: each slice runs under non-reentrant activation checkpointing, so
between forward and backward a layer keeps only its input and output (D wide), not the 2-4
ffn_dim-wide intermediates of every token; and the backward recomputes one slice at a time, so at
most one slice's intermediates exist at once (checkpointing alone would recompute all tokens'
at once; slicing alone would still store every slice's). The price is one more forward of the
block. Without autograd (eval, generation) the slices just bound the transient peak. The numbers
are the unsliced block's: each token's row is computed the same way, only the weight gradients
sum the slices in another order.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from bigseq.modules.dropout import Dropout
from bigseq.modules.linear import Linear

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    # GPT-2's tanh approximation; fairseq calls it gelu_accurate (gelu_fast is its old alias)
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_accurate": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "linear": lambda x: x,
}
GATED_ACTIVATIONS = {"swiglu": F.silu, "geglu": F.gelu, "geglu_tanh": lambda x: F.gelu(x, approximate="tanh")}


class _TiledMLP(nn.Module):
    chunks = 1
    """Slices of the tokens the block runs over (1: the whole tensor at once)."""

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.chunks == 1 or x.numel() == 0:
            return self.mlp(x)
        x_ND = x.reshape(-1, x.shape[-1])
        recompute = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        outs = [checkpoint(self.mlp, piece, use_reentrant=False) if recompute else self.mlp(piece)
                for piece in x_ND.tensor_split(self.chunks) if len(piece)]  # K > N leaves empty slices
        return torch.cat(outs).view(*x.shape[:-1], -1)


class FeedForward(_TiledMLP):
    """down(dropout(act(up(x))))"""

    def __init__(self, dim: int, ffn_dim: int, activation_fn: str, *, bias: bool = True,
                 activation_dropout: float = 0.0):
        super().__init__()
        self.act = ACTIVATIONS[activation_fn]
        self.up_proj = Linear(dim, ffn_dim, bias=bias)
        self.down_proj = Linear(ffn_dim, dim, bias=bias)
        self.activation_dropout = Dropout(activation_dropout)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.activation_dropout(self.act(self.up_proj(x))))


class GatedFeedForward(_TiledMLP):
    """down(dropout(act(gate(x)) * up(x))): SwiGLU with act=silu (Llama), GeGLU with gelu."""

    def __init__(self, dim: int, ffn_dim: int, activation_fn: str = "swiglu", *, bias: bool = False,
                 activation_dropout: float = 0.0):
        super().__init__()
        self.act = GATED_ACTIVATIONS[activation_fn]
        self.gate_proj = Linear(dim, ffn_dim, bias=bias)
        self.up_proj = Linear(dim, ffn_dim, bias=bias)
        self.down_proj = Linear(ffn_dim, dim, bias=bias)
        self.activation_dropout = Dropout(activation_dropout)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.activation_dropout(self.act(self.gate_proj(x)) * self.up_proj(x)))


def build_feedforward(dim: int, ffn_dim: int, activation_fn: str, *, bias: bool,
                      activation_dropout: float = 0.0, chunks: int = 1) -> nn.Module:
    """chunks: slices of the tokens (module docstring); >= 1."""
    if chunks < 1:
        raise ValueError(f"chunks must be >= 1, got {chunks}")
    cls = GatedFeedForward if activation_fn in GATED_ACTIVATIONS else FeedForward
    ffn = cls(dim, ffn_dim, activation_fn, bias=bias, activation_dropout=activation_dropout)
    ffn.chunks = chunks
    return ffn
