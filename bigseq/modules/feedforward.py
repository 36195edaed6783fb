"""Position-wise feed-forward blocks: activation MLP (GPT-2/fairseq) and gated ones: SwiGLU (Llama),
GeGLU with the exact gelu, or with its tanh approximation (Gemma's gelu_pytorch_tanh)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from bigseq.modules.dropout import Dropout

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


class FeedForward(nn.Module):
    """down(dropout(act(up(x))))"""

    def __init__(self, dim: int, ffn_dim: int, activation_fn: str, *, bias: bool = True,
                 activation_dropout: float = 0.0):
        super().__init__()
        self.act = ACTIVATIONS[activation_fn]
        self.up_proj = nn.Linear(dim, ffn_dim, bias=bias)
        self.down_proj = nn.Linear(ffn_dim, dim, bias=bias)
        self.activation_dropout = Dropout(activation_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.activation_dropout(self.act(self.up_proj(x))))


class GatedFeedForward(nn.Module):
    """down(dropout(act(gate(x)) * up(x))): SwiGLU with act=silu (Llama), GeGLU with gelu."""

    def __init__(self, dim: int, ffn_dim: int, activation_fn: str = "swiglu", *, bias: bool = False,
                 activation_dropout: float = 0.0):
        super().__init__()
        self.act = GATED_ACTIVATIONS[activation_fn]
        self.gate_proj = nn.Linear(dim, ffn_dim, bias=bias)
        self.up_proj = nn.Linear(dim, ffn_dim, bias=bias)
        self.down_proj = nn.Linear(ffn_dim, dim, bias=bias)
        self.activation_dropout = Dropout(activation_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.activation_dropout(self.act(self.gate_proj(x)) * self.up_proj(x)))


def build_feedforward(dim: int, ffn_dim: int, activation_fn: str, *, bias: bool,
                      activation_dropout: float = 0.0) -> nn.Module:
    cls = GatedFeedForward if activation_fn in GATED_ACTIVATIONS else FeedForward
    return cls(dim, ffn_dim, activation_fn, bias=bias, activation_dropout=activation_dropout)
