"""TransformerConfig: fairseq's encoder-decoder ``transformer`` model, flag for flag.

The ``encoder`` and ``decoder`` sections give fairseq's flat flags (``cfg.encoder.embed_dim``
is ``--encoder-embed-dim``); the defaults are fairseq's ``base_architecture`` (post-norm,
sinusoidal positions, ReLU, scaled embeddings, 6 + 6 layers of 512). As in fairseq, the
decoder's embedding and FFN sizes default to the encoder's: ``cfg.decoder.embed_dim`` None
means "the encoder's", so ``--arch transformer --encoder-embed-dim 256`` sizes both; read
the sizes in effect from ``cfg.decoder_dim`` / ``cfg.decoder_ffn_dim``.
Fields declared ``runtime(...)`` may change when a run resumes; the rest is the architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from bigseq.config.fields import runtime, section
from bigseq.models.transformer.config_checks import check_config

ActivationName = Literal["relu", "gelu", "gelu_accurate", "gelu_fast", "tanh", "linear", "swish"]


@dataclass(kw_only=True)
class EncoderConfig:
    embed_dim: int = 512
    """Encoder embedding (model) dimension."""
    ffn_embed_dim: int = 2048
    """Encoder feed-forward hidden dimension."""
    layers: int = 6
    """Number of encoder layers."""
    attention_heads: int = 8
    """Number of encoder attention heads."""
    normalize_before: bool = False
    """Pre-norm encoder layers, plus a final LayerNorm (fairseq's default: post-norm)."""
    learned_pos: bool = False
    """Learned source positional embeddings (default: sinusoidal)."""


@dataclass(kw_only=True)
class DecoderConfig:
    embed_dim: Optional[int] = None
    """Decoder embedding (model) dimension (None: --encoder-embed-dim)."""
    ffn_embed_dim: Optional[int] = None
    """Decoder feed-forward hidden dimension (None: --encoder-ffn-embed-dim)."""
    layers: int = 6
    """Number of decoder layers."""
    attention_heads: int = 8
    """Number of decoder attention heads (self- and cross-attention)."""
    normalize_before: bool = False
    """Pre-norm decoder layers, plus a final LayerNorm (fairseq's default: post-norm)."""
    learned_pos: bool = False
    """Learned target positional embeddings (default: sinusoidal)."""


@dataclass(kw_only=True)
class TransformerConfig:
    encoder: EncoderConfig = section(EncoderConfig, "encoder_")
    decoder: DecoderConfig = section(DecoderConfig, "decoder_")
    share_all_embeddings: bool = False
    """One embedding table for source, target and output (needs a joined dictionary and equal
    --encoder-embed-dim / --decoder-embed-dim)."""
    share_decoder_input_output_embed: bool = False
    """Tie the output projection to the decoder's token embedding."""
    dropout: float = runtime(0.1)
    """Dropout on embeddings and residual branches (training only)."""
    attention_dropout: float = runtime(0.0)
    """Dropout on attention weights; must be 0 to build the model (bigseq.kernels.attention has no dropout)."""
    activation_dropout: float = runtime(0.0)
    """Dropout after the feed-forward activation (training only)."""
    activation_fn: ActivationName = "relu"
    """Feed-forward activation (gelu_accurate/gelu_fast: the tanh approximation)."""
    no_scale_embedding: bool = False
    """Do not multiply token embeddings by sqrt(embed dim)."""
    layernorm_embedding: bool = False
    """Add a LayerNorm after the encoder and decoder embeddings."""
    no_token_positional_embeddings: bool = False
    """Use no positional embeddings in the encoder and decoder."""
    max_source_positions: int = 1024
    """Longest source, in tokens (size of the learned source position table)."""
    max_target_positions: int = 1024
    """Longest target, in tokens (size of the learned target position table)."""
    checkpoint_activations: bool = runtime(False)
    """Recompute each layer's activations in the backward pass to save memory (training only)."""
    attention_impl: str = runtime("torch")
    """bigseq.kernels.attention implementation: auto, triton, cuda or torch."""

    def __post_init__(self):
        check_config(self)

    @property
    def decoder_dim(self) -> int:
        """The decoder's embedding dimension in effect."""
        return self.decoder.embed_dim or self.encoder.embed_dim

    @property
    def decoder_ffn_dim(self) -> int:
        """The decoder's feed-forward dimension in effect."""
        return self.decoder.ffn_embed_dim or self.encoder.ffn_embed_dim

    @property
    def ties_output(self) -> bool:
        """The output projection is the decoder's token embedding (shared with the encoder's under
        --share-all-embeddings)."""
        return self.share_all_embeddings or self.share_decoder_input_output_embed

    def position_kind(self, side: Literal["encoder", "decoder"]) -> str:
        """learned | sinusoidal | none, for the encoder or the decoder."""
        if self.no_token_positional_embeddings:
            return "none"
        return "learned" if getattr(self, side).learned_pos else "sinusoidal"
