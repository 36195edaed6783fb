"""TransformerLMConfig: one decoder-only config for GPT-2 style and Llama style models.

Field names follow fairseq's transformer_lm where fairseq has one, so a fairseq
command line carries over; the defaults are fairseq's `transformer_lm`
architecture (post-norm, sinusoidal positions, ReLU, scaled embeddings).
Llama-style fields (RoPE, RMSNorm, SwiGLU, grouped-query attention) are bigseq's, and so are
the later families' (head size, separate biases, q/k norm, llama3, longrope and linear RoPE, partial rotary,
sliding window; Gemma 2/3's and OLMo 2's norm kinds and placements, soft-capping, softmax scale, rounded
embedding scale, GeGLU-tanh, per-layer-type RoPE theta; checked in config_checks.py); each defaults to off,
the GPT-2/Llama 2 computation.
Fields declared ``runtime(...)`` may change when a run resumes; the rest is the architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from bigseq.config.fields import runtime
from bigseq.models.transformer_lm.config_checks import check_config

ActivationName = Literal["relu", "gelu", "gelu_new", "gelu_accurate", "gelu_fast", "silu", "swish", "tanh",
                         "linear", "swiglu", "geglu", "geglu_tanh"]


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
    """Feed-forward activation; swiglu/geglu/geglu_tanh use a gated block (gate, up, down projections);
    geglu_tanh gates with the tanh-approximate gelu (Gemma's gelu_pytorch_tanh)."""
    decoder_learned_pos: bool = False
    """Use learned positional embeddings (fairseq flag; same as --positions learned)."""
    no_token_positional_embeddings: bool = False
    """Use no positional embeddings (fairseq flag; same as --positions none)."""
    positions: Optional[Literal["learned", "sinusoidal", "rope", "none"]] = None
    """Position encoding; None: from the fairseq flags (sinusoidal unless --decoder-learned-pos or
    --no-token-positional-embeddings)."""
    position_offset: int = 0
    """Index of the first position in the learned or sinusoidal table (fairseq's transformer_lm
    checkpoints: pad_idx + 1, as its positions skip the padding row; the learned table then has this many
    more rows than --max-target-positions)."""
    rope_theta: float = 10000.0
    """RoPE base frequency (with --positions rope)."""
    rope_scaling: Literal["none", "llama3", "longrope", "linear"] = "none"
    """RoPE frequency scaling: llama3 = Llama 3.1's static rescaling (the four --rope-* fields below);
    longrope = Phi-3's per-frequency divisors (--rope-short-factor / --rope-long-factor); linear = every
    frequency divided by --rope-scaling-factor (Gemma 3's global layers)."""
    rope_scaling_factor: float = 8.0
    """llama3 and linear scaling: the context extension factor (low frequencies turn this much slower)."""
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
    rope_local_theta: Optional[float] = None
    """RoPE base frequency of the --sliding-window layers, without --rope-scaling (Gemma 3's local layers);
    None: they use the other layers' RoPE."""
    sliding_window: Optional[int] = None
    """Each query attends to itself and the sliding_window - 1 keys before it (None: to every key)."""
    sliding_window_layers: Optional[list[int]] = None
    """Indices of the layers that use --sliding-window (None: every layer); the others see every key."""
    decoder_normalize_before: bool = False
    """Pre-norm layers (GPT-2, Llama); False: post-norm (fairseq's default)."""
    decoder_norm_placement: Optional[Literal["pre", "post", "sandwich", "output"]] = None
    """Where each sublayer's norm sits: pre x + f(norm(x)), post norm(x + f(x)), sandwich
    x + post_norm(f(norm(x))) (Gemma), output x + post_norm(f(x)) (OLMo 2); None: pre with
    --decoder-normalize-before, else post."""
    no_decoder_final_norm: bool = False
    """Skip the final norm after the last layer (there is one unless the layers are post-norm)."""
    norm: Literal["layernorm", "rmsnorm", "rmsnorm_fp32", "rmsnorm_unit_offset"] = "layernorm"
    """Normalization layer type: rmsnorm scales in the input dtype (Llama), rmsnorm_fp32 in fp32 (OLMo 2),
    rmsnorm_unit_offset by (1 + weight) in fp32 with the weight initialized to 0 (Gemma)."""
    norm_eps: float = 1e-5
    """Epsilon of the norm layers."""
    qk_norm: Literal["none", "head", "full"] = "none"
    """RMSNorm on queries and keys before RoPE: head = over each head (Qwen3), full = over all heads (OLMo 2);
    the --norm kind of RMSNorm (plain rmsnorm with layernorm)."""
    query_pre_attn_scalar: Optional[float] = None
    """The attention softmax scale is this ** -0.5 (Gemma); None: head size ** -0.5."""
    attn_logit_softcap: Optional[float] = None
    """Soft-cap the scaled attention scores to tanh(s / cap) * cap before the mask (Gemma 2); torch attention."""
    final_logit_softcap: Optional[float] = None
    """Soft-cap the output logits to tanh(z / cap) * cap (Gemma 2); not with --fused-linear-ce."""
    layernorm_embedding: bool = False
    """Add a norm layer after the embeddings."""
    no_scale_embedding: bool = False
    """Do not multiply token embeddings by sqrt(--decoder-embed-dim) (fairseq scales by default)."""
    embed_scale_in_weight_dtype: bool = False
    """Round the sqrt(--decoder-embed-dim) embedding scale to the embedding weight's dtype before
    multiplying (Gemma); default: multiply by the exact float (fairseq)."""
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
    mlp_chunks: int = runtime(1)
    """Run each feed-forward block over K slices of the tokens, each recomputed in the backward, so at long
    sequences only one slice's ffn-wide activations exist at a time (DeepSpeed's TiledMLP; the tiled loss
    is --fused-linear-ce)."""

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

    @property
    def norm_placement(self) -> str:
        """The norm placement in effect: pre | post | sandwich | output."""
        if self.decoder_norm_placement is not None:
            return self.decoder_norm_placement
        return "pre" if self.decoder_normalize_before else "post"

    def layer_window(self, index: int) -> int | None:
        """The sliding window of decoder layer ``index`` (None: it attends to every key)."""
        if self.sliding_window_layers is not None and index not in self.sliding_window_layers:
            return None
        return self.sliding_window

    @property
    def has_final_norm(self) -> bool:
        return self.norm_placement != "post" and not self.no_decoder_final_norm
