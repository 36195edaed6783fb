"""TransformerLMConfig: one decoder-only config for GPT-2 style and Llama style models.

Field names follow fairseq's transformer_lm where fairseq has one, so a fairseq
command line carries over; the defaults are fairseq's `transformer_lm`
architecture (post-norm, sinusoidal positions, ReLU, scaled embeddings).
Llama-style fields (RoPE, RMSNorm, SwiGLU, grouped-query attention) are bigseq's, and so are
the later families' (head size, separate biases, q/k norm, llama3 and longrope RoPE, partial rotary,
sliding window;
checked in config_checks.py); each defaults to off, the GPT-2/Llama 2 computation.
Fields declared ``runtime(...)`` may change when a run resumes; the rest is the architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from bigseq.config.fields import runtime
from bigseq.models.transformer_lm.config_checks import check_config

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
    decoder_head_dim: Optional[int] = None
    """Size of each attention head (None: --decoder-embed-dim / --decoder-attention-heads; Qwen3, Mistral)."""
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
    rope_scaling: Literal["none", "llama3", "longrope"] = "none"
    """RoPE frequency scaling: llama3 = Llama 3.1's static rescaling (the four --rope-* fields below);
    longrope = Phi-3's per-frequency divisors (--rope-short-factor / --rope-long-factor)."""
    rope_scaling_factor: float = 8.0
    """llama3 scaling: the context extension factor (low frequencies turn this much slower)."""
    rope_low_freq_factor: float = 1.0
    """llama3 scaling: wavelengths above --rope-original-max-positions / this are divided by the factor."""
    rope_high_freq_factor: float = 4.0
    """llama3 scaling: wavelengths below --rope-original-max-positions / this are kept."""
    rope_original_max_positions: int = 8192
    """llama3, longrope scaling: the context length of pretraining."""
    rope_short_factor: Optional[list[float]] = None
    """longrope scaling: one divisor per rotated frequency, used while the largest position + 1 of a forward
    is at most --rope-original-max-positions."""
    rope_long_factor: Optional[list[float]] = None
    """longrope scaling: one divisor per rotated frequency, used when the largest position + 1 of a forward
    exceeds --rope-original-max-positions (a cached decode step: for its new tokens; generation re-runs the
    prefix at that step so every position switches, as transformers' Phi-3 generation does)."""
    rope_attention_factor: Optional[float] = None
    """longrope scaling: multiplier of RoPE's cos and sin (None: transformers' default, sqrt(1 + ln(s) /
    ln(--rope-original-max-positions)) for s = --max-target-positions / --rope-original-max-positions > 1, else 1)."""
    rope_partial_factor: float = 1.0
    """RoPE rotates only the first int(head size * this) dims of each head, the rest pass through (Phi-3's
    partial_rotary_factor; Phi-4-mini 0.75)."""
    sliding_window: Optional[int] = None
    """Each query attends to itself and the sliding_window - 1 keys before it (None: to every key)."""
    sliding_window_layers: Optional[list[int]] = None
    """Indices of the layers that use --sliding-window (None: every layer); the others see every key."""
    decoder_normalize_before: bool = False
    """Pre-norm layers (GPT-2, Llama); False: post-norm (fairseq's default)."""
    no_decoder_final_norm: bool = False
    """Skip the final norm after the last layer (only applied with --decoder-normalize-before)."""
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    """Normalization layer type."""
    norm_eps: float = 1e-5
    """Epsilon of the norm layers."""
    qk_norm: Literal["none", "head", "full"] = "none"
    """RMSNorm on queries and keys before RoPE: head = over each head (Qwen3), full = over all heads (OLMo 2)."""
    layernorm_embedding: bool = False
    """Add a norm layer after the embeddings."""
    no_scale_embedding: bool = False
    """Do not multiply token embeddings by sqrt(--decoder-embed-dim) (fairseq scales by default)."""
    bias: bool = True
    """Biases in the attention and feed-forward projections and the LayerNorms."""
    attention_qkv_bias: Optional[bool] = None
    """Biases in the q/k/v projections (None: --bias; Qwen2 has them without the others)."""
    attention_out_bias: Optional[bool] = None
    """Bias in the attention output projection (None: --bias)."""
    mlp_bias: Optional[bool] = None
    """Biases in the feed-forward projections (None: --bias)."""
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
        check_config(self)

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
        return self.decoder_head_dim or self.decoder_embed_dim // self.decoder_attention_heads

    @property
    def uses_qkv_bias(self) -> bool:
        return self.bias if self.attention_qkv_bias is None else self.attention_qkv_bias

    @property
    def uses_out_bias(self) -> bool:
        return self.bias if self.attention_out_bias is None else self.attention_out_bias

    @property
    def uses_mlp_bias(self) -> bool:
        return self.bias if self.mlp_bias is None else self.mlp_bias

    def layer_window(self, index: int) -> int | None:
        """The sliding window of decoder layer ``index`` (None: it attends to every key)."""
        if self.sliding_window_layers is not None and index not in self.sliding_window_layers:
            return None
        return self.sliding_window

    @property
    def has_final_norm(self) -> bool:
        return self.decoder_normalize_before and not self.no_decoder_final_norm
