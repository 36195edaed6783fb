"""The checks of a TransformerLMConfig: each bad value or contradiction is one line naming its flag."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bigseq.errors import BigseqError
from bigseq.modules.feedforward import ACTIVATIONS, GATED_ACTIVATIONS

if TYPE_CHECKING:
    from bigseq.models.transformer_lm.config import TransformerLMConfig


def check_config(cfg: TransformerLMConfig) -> None:
    d, h = cfg.decoder_embed_dim, cfg.decoder_attention_heads
    for name in ("decoder_layers", "decoder_embed_dim", "decoder_ffn_embed_dim", "decoder_attention_heads",
                 "max_target_positions"):
        if getattr(cfg, name) < 1:
            raise BigseqError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.decoder_head_dim is not None and cfg.decoder_head_dim < 1:
        raise BigseqError(f"--decoder-head-dim must be >= 1 (or unset), got {cfg.decoder_head_dim}")
    if cfg.decoder_head_dim is None and d % h:
        raise BigseqError(f"--decoder-embed-dim {d} is not divisible by --decoder-attention-heads {h}; "
                          f"pick a head count that divides it (or set --decoder-head-dim)")
    if cfg.decoder_kv_heads is not None and (cfg.decoder_kv_heads < 1 or h % cfg.decoder_kv_heads):
        raise BigseqError(f"--decoder-kv-heads {cfg.decoder_kv_heads} must divide --decoder-attention-heads {h}")
    for name in ("dropout", "activation_dropout"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise BigseqError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(cfg, name)}")
    if cfg.attention_dropout != 0.0:
        raise BigseqError(f"--attention-dropout {cfg.attention_dropout} is not supported "
                          f"(bigseq.kernels.attention has no dropout); set --attention-dropout 0")
    if cfg.activation_fn not in ACTIVATIONS and cfg.activation_fn not in GATED_ACTIVATIONS:
        raise BigseqError(f"--activation-fn {cfg.activation_fn}: unknown; use one of "
                          f"{', '.join([*ACTIVATIONS, *GATED_ACTIVATIONS])}")
    _check_positions(cfg)
    _check_rope_scaling(cfg)
    _check_sliding_window(cfg)
    _check_gemma_olmo_fields(cfg)
    if cfg.norm_eps <= 0 or cfg.init_std <= 0:
        raise BigseqError("--norm-eps and --init-std must be > 0")
    if cfg.mlp_chunks < 1:
        raise BigseqError(f"--mlp-chunks must be >= 1 (1: no tiling), got {cfg.mlp_chunks}")
    if cfg.vocab_size is not None and cfg.vocab_size < 1:
        raise BigseqError(f"--vocab-size must be >= 1, got {cfg.vocab_size}")


def _check_positions(cfg: TransformerLMConfig) -> None:
    if cfg.decoder_learned_pos and cfg.no_token_positional_embeddings:
        raise BigseqError("--decoder-learned-pos and --no-token-positional-embeddings contradict; drop one")
    if cfg.positions is not None:
        if cfg.decoder_learned_pos and cfg.positions != "learned":
            raise BigseqError(f"--decoder-learned-pos contradicts --positions {cfg.positions}; "
                              f"use --positions learned")
        if cfg.no_token_positional_embeddings and cfg.positions != "none":
            raise BigseqError(f"--no-token-positional-embeddings contradicts --positions {cfg.positions}; "
                              f"use --positions none")
    kind = cfg.position_kind
    if kind == "rope" and cfg.head_dim % 2:
        raise BigseqError(f"RoPE needs an even head dimension, got {cfg.head_dim}; change the head count")
    if kind == "sinusoidal" and cfg.decoder_embed_dim % 2:
        raise BigseqError(f"sinusoidal positions need an even --decoder-embed-dim, got {cfg.decoder_embed_dim}")
    if cfg.rope_theta <= 0:
        raise BigseqError(f"--rope-theta must be > 0, got {cfg.rope_theta}")
    if cfg.position_offset < 0 or (cfg.position_offset and kind not in ("learned", "sinusoidal")):
        raise BigseqError(f"--position-offset {cfg.position_offset}: must be >= 0, and only learned or "
                          f"sinusoidal positions have one (these are {kind})")


def _check_rope_scaling(cfg: TransformerLMConfig) -> None:
    _check_rope_partial(cfg)
    # the llama3 and longrope values stay allowed without them: --rope-scaling none must switch a model off
    if cfg.rope_scaling == "none":
        return
    if cfg.position_kind != "rope":
        raise BigseqError(f"--rope-scaling {cfg.rope_scaling} needs --positions rope")
    if cfg.rope_scaling == "longrope":
        _check_longrope(cfg)
        return
    if cfg.rope_scaling_factor <= 0 or cfg.rope_original_max_positions < 1:
        raise BigseqError("--rope-scaling-factor and --rope-original-max-positions must be > 0")
    if cfg.rope_scaling == "linear":
        return
    if not 0 < cfg.rope_low_freq_factor < cfg.rope_high_freq_factor:
        raise BigseqError(f"--rope-low-freq-factor {cfg.rope_low_freq_factor} must be > 0 and below "
                          f"--rope-high-freq-factor {cfg.rope_high_freq_factor}")


def _check_rope_partial(cfg: TransformerLMConfig) -> None:
    factor = cfg.rope_partial_factor
    if not 0 < factor <= 1:
        raise BigseqError(f"--rope-partial-factor must be in (0, 1], got {factor}")
    rotated = int(cfg.head_dim * factor)
    if factor != 1 and (rotated < 2 or rotated % 2):
        raise BigseqError(f"--rope-partial-factor {factor} rotates {rotated} of {cfg.head_dim} head dims; "
                          f"pick a factor that rotates an even number >= 2")


def _check_longrope(cfg: TransformerLMConfig) -> None:
    if cfg.rope_original_max_positions < 1:
        raise BigseqError("--rope-original-max-positions must be > 0")
    pairs = int(cfg.head_dim * cfg.rope_partial_factor) // 2
    for name in ("rope_short_factor", "rope_long_factor"):
        factors = getattr(cfg, name)
        if factors is None or len(factors) != pairs or not all(f > 0 for f in factors):
            raise BigseqError(f"--{name.replace('_', '-')}: longrope needs {pairs} factors > 0 (one per rotated "
                              f"frequency), got {factors}")
    if cfg.rope_attention_factor is not None and cfg.rope_attention_factor <= 0:
        raise BigseqError(f"--rope-attention-factor must be > 0 (or unset), got {cfg.rope_attention_factor}")


def _check_sliding_window(cfg: TransformerLMConfig) -> None:
    if cfg.sliding_window is None:
        if cfg.sliding_window_layers is not None:
            raise BigseqError("--sliding-window-layers needs --sliding-window")
        return
    if cfg.sliding_window < 1:
        raise BigseqError(f"--sliding-window must be >= 1 (or unset), got {cfg.sliding_window}")
    if cfg.attention_impl in ("triton", "cuda"):
        raise BigseqError(f"--sliding-window runs on the torch attention only; use --attention-impl auto or torch "
                          f"instead of {cfg.attention_impl}")
    layers = cfg.sliding_window_layers
    if layers is not None and (list(layers) != sorted(set(layers)) or layers and not
                               0 <= layers[0] <= layers[-1] < cfg.decoder_layers):
        raise BigseqError(f"--sliding-window-layers {list(layers)}: give increasing layer indices "
                          f"in [0, {cfg.decoder_layers})")


def _check_gemma_olmo_fields(cfg: TransformerLMConfig) -> None:
    placement = cfg.decoder_norm_placement
    if placement is not None and cfg.decoder_normalize_before and placement != "pre":
        raise BigseqError(f"--decoder-normalize-before contradicts --decoder-norm-placement {placement}; drop one")
    for name in ("query_pre_attn_scalar", "attn_logit_softcap", "final_logit_softcap", "rope_local_theta"):
        value = getattr(cfg, name)
        if value is not None and not value > 0:
            raise BigseqError(f"--{name.replace('_', '-')} must be > 0 (or unset), got {value}")
    if cfg.attn_logit_softcap is not None and cfg.attention_impl in ("triton", "cuda"):
        raise BigseqError(f"--attn-logit-softcap runs on the torch attention only; use --attention-impl auto or "
                          f"torch instead of {cfg.attention_impl}")
    if cfg.embed_scale_in_weight_dtype and cfg.no_scale_embedding:
        raise BigseqError("--embed-scale-in-weight-dtype contradicts --no-scale-embedding; drop one")
    if cfg.rope_local_theta is not None and (cfg.position_kind != "rope" or cfg.sliding_window is None):
        raise BigseqError("--rope-local-theta needs --positions rope and --sliding-window (it is the RoPE base "
                          "of the sliding-window layers)")
