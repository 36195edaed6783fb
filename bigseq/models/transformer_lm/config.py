"""TransformerLMConfig: one decoder-only config for GPT-2 style and Llama style models.

Field names follow fairseq's transformer_lm where fairseq has one, so a fairseq
command line carries over; the defaults are fairseq's `transformer_lm`
architecture (post-norm, sinusoidal positions, ReLU, scaled embeddings).
Llama-style fields (RoPE, RMSNorm, SwiGLU, grouped-query attention) are bigseq's.
Fields declared ``runtime(...)`` may change when a run resumes; the rest is the architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from bigseq.config.fields import runtime
from bigseq.errors import BigseqError
from bigseq.modules.feedforward import ACTIVATIONS, GATED_ACTIVATIONS

ActivationName = Literal["relu", "gelu", "gelu_new", "gelu_accurate", "gelu_fast", "silu", "swish", "tanh",
                         "linear", "swiglu", "geglu"]


@dataclass(kw_only=True)
class TransformerLMConfig:
    decoder_layers: int = 6
    """Number of decoder layers."""
    decoder_embed_dim: int = 512
    """Model (embedding) dimension."""
    decoder_ffn_embed_dim: int = 2048
    """Hidden dimension of the feed-forward block (per branch for swiglu/geglu)."""
    decoder_attention_heads: int = 8
    """Number of query attention heads."""
    decoder_kv_heads: Optional[int] = None
    """Number of key/value heads for grouped-query attention (None: same as --decoder-attention-heads)."""
    share_decoder_input_output_embed: bool = False
    """Tie the output projection to the input token embedding."""
    dropout: float = runtime(0.1)
    """Dropout on embeddings and residual branches (training only)."""
    attention_dropout: float = runtime(0.0)
    """Dropout on attention weights; must be 0: bigseq.kernels.attention has no dropout."""
    activation_dropout: float = runtime(0.0)
    """Dropout after the feed-forward activation (training only)."""
    activation_fn: ActivationName = "relu"
    """Feed-forward activation; swiglu/geglu use a gated block (gate, up, down projections)."""
    decoder_learned_pos: bool = False
    """Use learned positional embeddings (fairseq flag; same as --positions learned)."""
    no_token_positional_embeddings: bool = False
    """Use no positional embeddings (fairseq flag; same as --positions none)."""
    positions: Optional[Literal["learned", "sinusoidal", "rope", "none"]] = None
    """Position encoding; None: from the fairseq flags (sinusoidal unless --decoder-learned-pos or
    --no-token-positional-embeddings)."""
    rope_theta: float = 10000.0
    """RoPE base frequency (with --positions rope)."""
    decoder_normalize_before: bool = False
    """Pre-norm layers (GPT-2, Llama); False: post-norm (fairseq's default)."""
    no_decoder_final_norm: bool = False
    """Skip the final norm after the last layer (only applied with --decoder-normalize-before)."""
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    """Normalization layer type."""
    norm_eps: float = 1e-5
    """Epsilon of the norm layers."""
    layernorm_embedding: bool = False
    """Add a norm layer after the embeddings."""
    no_scale_embedding: bool = False
    """Do not multiply token embeddings by sqrt(--decoder-embed-dim) (fairseq scales by default)."""
    bias: bool = True
    """Biases in the attention and feed-forward projections and the LayerNorms."""
    max_target_positions: int = 1024
    """Maximum sequence length (size of the learned position table; KV cache bound for generation)."""
    vocab_size: Optional[int] = None
    """Vocabulary size; filled from the task's dictionary (an explicit value must match it)."""
    init_std: float = 0.02
    """Std of the normal init of weights (embeddings, projections)."""
    scale_residual_init: bool = True
    """Divide the init std of residual output projections by sqrt(2 * --decoder-layers) (GPT-2)."""
    checkpoint_activations: bool = runtime(False)
    """Recompute each layer's activations in the backward pass to save memory (training only)."""
    checkpoint_interval: int = runtime(1)
    """With --checkpoint-activations: decoder layers per recomputed segment."""
    attention_impl: str = runtime("torch")
    """bigseq.kernels.attention implementation: auto, triton, cuda or torch."""

    def __post_init__(self):
        d, h = self.decoder_embed_dim, self.decoder_attention_heads
        for name in ("decoder_layers", "decoder_embed_dim", "decoder_ffn_embed_dim", "decoder_attention_heads",
                     "max_target_positions"):
            if getattr(self, name) < 1:
                raise BigseqError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if d % h:
            raise BigseqError(f"--decoder-embed-dim {d} is not divisible by --decoder-attention-heads {h}; "
                              f"pick a head count that divides it")
        if self.decoder_kv_heads is not None and (self.decoder_kv_heads < 1 or h % self.decoder_kv_heads):
            raise BigseqError(f"--decoder-kv-heads {self.decoder_kv_heads} must divide --decoder-attention-heads {h}")
        for name in ("dropout", "activation_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise BigseqError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        if self.attention_dropout != 0.0:
            raise BigseqError(f"--attention-dropout {self.attention_dropout} is not supported "
                              f"(bigseq.kernels.attention has no dropout); set --attention-dropout 0")
        if self.activation_fn not in ACTIVATIONS and self.activation_fn not in GATED_ACTIVATIONS:
            raise BigseqError(f"--activation-fn {self.activation_fn}: unknown; use one of "
                              f"{', '.join([*ACTIVATIONS, *GATED_ACTIVATIONS])}")
        self._check_positions()
        if self.norm_eps <= 0 or self.init_std <= 0:
            raise BigseqError("--norm-eps and --init-std must be > 0")
        if self.vocab_size is not None and self.vocab_size < 1:
            raise BigseqError(f"--vocab-size must be >= 1, got {self.vocab_size}")

    def _check_positions(self) -> None:
        if self.decoder_learned_pos and self.no_token_positional_embeddings:
            raise BigseqError("--decoder-learned-pos and --no-token-positional-embeddings contradict; drop one")
        if self.positions is not None:
            if self.decoder_learned_pos and self.positions != "learned":
                raise BigseqError(f"--decoder-learned-pos contradicts --positions {self.positions}; "
                                  f"use --positions learned")
            if self.no_token_positional_embeddings and self.positions != "none":
                raise BigseqError(f"--no-token-positional-embeddings contradicts --positions {self.positions}; "
                                  f"use --positions none")
        kind = self.position_kind
        if kind == "rope" and self.head_dim % 2:
            raise BigseqError(f"RoPE needs an even head dimension, got {self.head_dim}; change the head count")
        if kind == "sinusoidal" and self.decoder_embed_dim % 2:
            raise BigseqError(f"sinusoidal positions need an even --decoder-embed-dim, got {self.decoder_embed_dim}")
        if self.rope_theta <= 0:
            raise BigseqError(f"--rope-theta must be > 0, got {self.rope_theta}")

    @property
    def position_kind(self) -> str:
        """The position encoding in effect: learned | sinusoidal | rope | none."""
        if self.positions is not None:
            return self.positions
        if self.no_token_positional_embeddings:
            return "none"
        return "learned" if self.decoder_learned_pos else "sinusoidal"

    @property
    def kv_heads(self) -> int:
        return self.decoder_kv_heads or self.decoder_attention_heads

    @property
    def head_dim(self) -> int:
        return self.decoder_embed_dim // self.decoder_attention_heads

    @property
    def has_final_norm(self) -> bool:
        return self.decoder_normalize_before and not self.no_decoder_final_norm
