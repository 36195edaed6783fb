"""A fairseq model config (``cfg["model"]`` or ``args``) -> bigseq's TransformerConfig / TransformerLMConfig.

Values missing from an old checkpoint take fairseq's ``base_architecture`` / ``base_lm_architecture``
defaults. What bigseq cannot compute exactly is refused in one line (adaptive input/softmax,
cross-self-attention, no cross-attention, layer pruning, input/output projections, NormFormer scales,
...). Training-only regularizers with no effect on the weights or on inference are dropped:
attention dropout (bigseq's attention kernels have none; fairseq's value is kept in the folder's
fairseq record and written back on export), LayerDrop and quant-noise.
"""

from __future__ import annotations

import argparse

from bigseq.checkpoint.fairseq_pickle import ModelArgs
from bigseq.errors import BigseqError
from bigseq.models.transformer.config import DecoderConfig, EncoderConfig, TransformerConfig
from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.modules.feedforward import ACTIVATIONS

TRANSFORMER_ARCHS = ("transformer", "transformer_tiny", "transformer_iwslt_de_en", "transformer_wmt_en_de",
                     "transformer_vaswani_wmt_en_de_big", "transformer_vaswani_wmt_en_fr_big",
                     "transformer_wmt_en_de_big", "transformer_wmt_en_de_big_t2t")
PAD_IDX = 1
"""fairseq's Dictionary: <s>=0, <pad>=1, </s>=2, <unk>=3."""

# flag -> why it cannot be converted (refused when set to anything truthy)
_UNSUPPORTED = {
    "adaptive_softmax_cutoff": "adaptive softmax", "adaptive_input": "adaptive input embeddings",
    "tie_adaptive_weights": "adaptive input/softmax tying", "character_embeddings": "character embeddings",
    "cross_self_attention": "cross-self-attention", "no_cross_attention": "a decoder without cross-attention",
    "encoder_layers_to_keep": "pruned encoder layers", "decoder_layers_to_keep": "pruned decoder layers",
    "merge_src_tgt_embed": "merged source/target embeddings", "scale_attn": "NormFormer attention scales",
    "scale_fc": "NormFormer FFN scales", "scale_heads": "NormFormer head scales",
    "scale_resids": "NormFormer residual scales", "base_layers": "BASE layers",
    "decoder_xformers_att_config": "xFormers attention", "encoder_xformers_att_config": "xFormers attention",
    "alibi": "ALiBi", "rel_pos_buckets": "relative position buckets",
}


def family_of(args: ModelArgs, path: str) -> str:
    """'transformer' or 'transformer_lm' for a fairseq arch this converter reads, else one line."""
    arch = args.arch
    if arch in TRANSFORMER_ARCHS:
        return "transformer"
    if isinstance(arch, str) and arch.startswith("transformer_lm"):
        return "transformer_lm"
    raise BigseqError(f"{path}: fairseq arch '{arch}' is not supported; from-fairseq converts the transformer "
                      f"archs ({', '.join(TRANSFORMER_ARCHS)}) and transformer_lm*")


def refuse_unsupported(args: ModelArgs, path: str, family: str) -> None:
    for flag, what in _UNSUPPORTED.items():
        if args.get(flag):
            raise BigseqError(f"{path}: --{flag.replace('_', '-')} {args.get(flag)} ({what}) has no bigseq "
                              f"equivalent; this {family} checkpoint cannot be converted exactly")
    for side in ("encoder", "decoder") if family == "transformer" else ("decoder",):
        dim = args.get(f"{side}_embed_dim", 512)
        for extra in ("input_dim", "output_dim"):
            if args.get(f"{side}_{extra}", dim) != dim:
                raise BigseqError(f"{path}: --{side}-{extra.replace('_', '-')} {args.get(f'{side}_{extra}')} differs "
                                  f"from --{side}-embed-dim {dim} (a projection bigseq has no layer for); "
                                  f"cannot convert")
    act = _activation(args)
    if act not in ACTIVATIONS:
        raise BigseqError(f"{path}: --activation-fn {act} has no bigseq equivalent; cannot convert")


def _activation(args: ModelArgs) -> str:
    act = args.get("activation_fn", "relu")
    return "silu" if act == "swish" else act


def _activation_dropout(args: ModelArgs) -> float:
    return float(args.get("activation_dropout", 0.0) or args.get("relu_dropout", 0.0))


def transformer_config(args: ModelArgs, *, encoder_final_norm: bool, decoder_final_norm: bool,
                       path: str) -> TransformerConfig:
    """fairseq's transformer args -> TransformerConfig; *_final_norm: whether the checkpoint's version keeps it."""
    enc_dim = args.get("encoder_embed_dim", 512)
    enc_ffn = args.get("encoder_ffn_embed_dim", 2048)
    sides = {}
    for side, final_norm in (("encoder", encoder_final_norm), ("decoder", decoder_final_norm)):
        pre = bool(args.get(f"{side}_normalize_before", False))
        if pre and not final_norm:
            raise BigseqError(f"{path}: a pre-norm {side} saved by a fairseq version without its final LayerNorm "
                              f"({side}.version <= 2); bigseq's pre-norm stacks always end in one")
        sides[side] = dict(layers=args.get(f"{side}_layers", 6), attention_heads=args.get(f"{side}_attention_heads", 8),
                           normalize_before=pre, learned_pos=bool(args.get(f"{side}_learned_pos", False)))
    share_all = bool(args.get("share_all_embeddings", False))
    return TransformerConfig(
        encoder=EncoderConfig(embed_dim=enc_dim, ffn_embed_dim=enc_ffn, **sides["encoder"]),
        decoder=DecoderConfig(embed_dim=args.get("decoder_embed_dim", enc_dim),
                              ffn_embed_dim=args.get("decoder_ffn_embed_dim", enc_ffn), **sides["decoder"]),
        share_all_embeddings=share_all,
        share_decoder_input_output_embed=share_all or bool(args.get("share_decoder_input_output_embed", False)),
        dropout=float(args.get("dropout", 0.1)), attention_dropout=0.0, activation_dropout=_activation_dropout(args),
        activation_fn=_activation(args), no_scale_embedding=bool(args.get("no_scale_embedding", False)),
        layernorm_embedding=bool(args.get("layernorm_embedding", False)),
        no_token_positional_embeddings=bool(args.get("no_token_positional_embeddings", False)),
        max_source_positions=args.get("max_source_positions", 1024),
        max_target_positions=args.get("max_target_positions", 1024))


def lm_config(args: ModelArgs, *, vocab_size: int, max_positions: int | None, final_norm: bool) -> TransformerLMConfig:
    """fairseq's transformer_lm args -> TransformerLMConfig. Positions keep fairseq's offset (pad_idx + 1);
    max_positions: the learned table's rows less that offset (None: from the args)."""
    learned = bool(args.get("decoder_learned_pos", False))
    no_positions = bool(args.get("no_token_positional_embeddings", False))
    if max_positions is None:
        max_positions = args.get("max_target_positions") or args.get("tokens_per_sample", 1024)
    # base_lm_architecture, which every legacy --arch runs on load: pre-norm always; old flags set the final norm
    legacy = isinstance(args.source, argparse.Namespace)
    no_final_norm = bool(args.get("no_decoder_final_norm", False))
    if legacy and args.has("no_tie_adaptive_proj"):
        no_final_norm = True
    if legacy and args.has("decoder_final_norm"):
        no_final_norm = not args.get("decoder_final_norm")
    return TransformerLMConfig(
        decoder_layers=args.get("decoder_layers", 6), decoder_embed_dim=args.get("decoder_embed_dim", 512),
        decoder_ffn_embed_dim=args.get("decoder_ffn_embed_dim", 2048),
        decoder_attention_heads=args.get("decoder_attention_heads", 8),
        share_decoder_input_output_embed=bool(args.get("share_decoder_input_output_embed", False)),
        dropout=float(args.get("dropout", 0.1)), attention_dropout=0.0, activation_dropout=_activation_dropout(args),
        activation_fn=_activation(args), decoder_learned_pos=learned, no_token_positional_embeddings=no_positions,
        position_offset=0 if no_positions else PAD_IDX + 1,
        decoder_normalize_before=legacy or bool(args.get("decoder_normalize_before", False)),
        no_decoder_final_norm=no_final_norm or not final_norm,
        layernorm_embedding=bool(args.get("layernorm_embedding", False)),
        no_scale_embedding=bool(args.get("no_scale_embedding", False)), norm="layernorm", norm_eps=1e-5, bias=True,
        max_target_positions=max_positions, vocab_size=vocab_size)
