"""The checks of a TransformerConfig: each bad value or contradiction is one line naming its flag.

Checks that need the task (a joined dictionary for --share-all-embeddings) or that refuse a
value only for training (--attention-dropout, which fairseq's big archs set) run when the
model is built (model.check_buildable), so a named architecture always constructs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bigseq.errors import BigseqError
from bigseq.modules.feedforward import ACTIVATIONS

if TYPE_CHECKING:
    from bigseq.models.transformer.config import TransformerConfig


def check_config(cfg: TransformerConfig) -> None:
    for side in ("encoder", "decoder"):
        _check_side(cfg, side)
    for name in ("max_source_positions", "max_target_positions"):
        if getattr(cfg, name) < 1:
            raise BigseqError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    for name in ("dropout", "attention_dropout", "activation_dropout"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise BigseqError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(cfg, name)}")
    if cfg.activation_fn not in ACTIVATIONS:
        raise BigseqError(f"--activation-fn {cfg.activation_fn}: unknown; use one of {', '.join(ACTIVATIONS)}")
    if cfg.share_all_embeddings and cfg.encoder.embed_dim != cfg.decoder_dim:
        raise BigseqError(f"--share-all-embeddings needs --encoder-embed-dim ({cfg.encoder.embed_dim}) to equal "
                          f"--decoder-embed-dim ({cfg.decoder_dim}); set them equal or drop --share-all-embeddings")


def _check_side(cfg: TransformerConfig, side: str) -> None:
    section = getattr(cfg, side)
    sizes = {"layers": section.layers, "attention_heads": section.attention_heads,
             "embed_dim": section.embed_dim, "ffn_embed_dim": section.ffn_embed_dim}
    for name, value in sizes.items():
        if value is not None and value < 1:
            raise BigseqError(f"--{side}-{name.replace('_', '-')} must be >= 1, got {value}")
    dim = cfg.encoder.embed_dim if side == "encoder" else cfg.decoder_dim
    if dim % section.attention_heads:
        raise BigseqError(f"--{side}-embed-dim {dim} is not divisible by --{side}-attention-heads "
                          f"{section.attention_heads}; pick a head count that divides it")
    if cfg.position_kind(side) == "sinusoidal" and dim % 2:
        raise BigseqError(f"sinusoidal positions need an even --{side}-embed-dim, got {dim} "
                          f"(or use --{side}-learned-pos)")
