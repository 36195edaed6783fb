"""What the FSMT and M2M100 adapters share: fairseq's layer names under HF's prefixes, the config fields
both model types spell alike, and the checks that refuse, by field or flag name, what is not exact.

HF names (both types): ``model.{encoder,decoder}.layers.{i}.self_attn.{q,k,v,out}_proj``,
``self_attn_layer_norm``, ``encoder_attn.*`` / ``encoder_attn_layer_norm`` (decoder), ``fc1``, ``fc2``,
``final_layer_norm``: fairseq's own names, so each of ours maps by a rename, never a transform.
Both types have one ``d_model`` for encoder and decoder, one ``max_position_embeddings``, ReLU and
fairseq's sinusoidal positions (pads skipped, so left-padded sources give the same outputs).
LayerDrop is accepted on import and dropped (bigseq trains without it; inference is unchanged).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from bigseq.errors import BigseqError
from bigseq.models.transformer.config import DecoderConfig, EncoderConfig, TransformerConfig
from bigseq.models.transformer_lm.hf.base import HFAdapter, Mapping, Transform, one, refuse

# ours -> HF, inside one layer
_LAYER = [("attn.q_proj", "self_attn.q_proj"), ("attn.k_proj", "self_attn.k_proj"), ("attn.v_proj", "self_attn.v_proj"),
          ("attn.out_proj", "self_attn.out_proj"), ("attn_norm", "self_attn_layer_norm")]
_CROSS = [("cross_attn.q_proj", "encoder_attn.q_proj"), ("cross_attn.k_proj", "encoder_attn.k_proj"),
          ("cross_attn.v_proj", "encoder_attn.v_proj"), ("cross_attn.out_proj", "encoder_attn.out_proj"),
          ("cross_attn_norm", "encoder_attn_layer_norm")]
_FFN = [("ffn.up_proj", "fc1"), ("ffn.down_proj", "fc2"), ("ffn_norm", "final_layer_norm")]

FAIRSEQ_IDS = {"bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2}
"""fairseq's Dictionary: <s> 0, <pad> 1, </s> 2 (<unk> 3 lives in the tokenizer, not config.json)."""


def sinusoidal_table(rows: int, dim: int, pad_idx: int | None) -> torch.Tensor:
    """fairseq's (and HF FSMT's) table, computed as they compute it so the fp32 values are the same bits."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.int64).float() * -(math.log(10000) / (half - 1)))
    angles = torch.arange(rows, dtype=torch.int64).float().unsqueeze(1) * freqs.unsqueeze(0)
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).view(rows, -1)
    if pad_idx is not None:
        table[pad_idx, :] = 0
    return table


def duplicate(name: str) -> Transform:
    """Our one tensor written as two HF tensors that must stay equal (an HF class that cannot tie them)."""
    def back(ts):
        if not torch.equal(ts[0], ts[1]):
            raise BigseqError(f"HF tensors for the {name} differ, but this config ties them")
        return ts[:1]
    return Transform(f"duplicate_{name}", lambda ts: (ts[0], ts[0].clone()), back)


class Seq2SeqAdapter(HFAdapter):
    """FSMT or M2M100; subclasses say their norm placement, embeddings and config class."""

    config_class = ""
    pre_norm = False
    ignored_suffixes = (".version", "embed_positions._float_tensor")  # fairseq buffers in converted files

    # what subclasses say ----------------------------------------------------------
    def embedding_map(self, cfg: TransformerConfig) -> tuple[list[Mapping], list[Mapping]]:
        """(mappings before the encoder layers, mappings after the decoder layers)."""
        raise NotImplementedError

    def vocab_from_hf(self, c: dict[str, Any]) -> tuple[int, int, bool]:
        """(source vocabulary, target vocabulary, share_all_embeddings) of a config.json."""
        raise NotImplementedError

    def vocab_to_hf(self, cfg: TransformerConfig, src_vocab_size: int, tgt_vocab_size: int) -> dict[str, Any]:
        raise NotImplementedError

    def why_not(self, cfg: TransformerConfig) -> str | None:
        """The flag that makes ``cfg`` compute something else than this model type (None: it is exact)."""
        sides = {"encoder": cfg.encoder, "decoder": cfg.decoder}
        for side, section in sides.items():
            if section.normalize_before != self.pre_norm:
                return (f"--{side}-normalize-before {section.normalize_before}: HF {self.model_type} is "
                        f"{'pre' if self.pre_norm else 'post'}-norm")
            if cfg.position_kind(side) != "sinusoidal":
                return f"{side} positions are {cfg.position_kind(side)}: HF {self.model_type} has sinusoidal ones"
        if cfg.activation_fn != "relu":
            return f"--activation-fn {cfg.activation_fn}: HF {self.model_type} is exported with relu only"
        if cfg.layernorm_embedding:
            return f"--layernorm-embedding: HF {self.model_type} has no embedding LayerNorm"
        if cfg.decoder_dim != cfg.encoder.embed_dim:
            return (f"--decoder-embed-dim {cfg.decoder_dim} differs from --encoder-embed-dim "
                    f"{cfg.encoder.embed_dim}: HF {self.model_type} has one d_model")
        if cfg.max_source_positions != cfg.max_target_positions:
            return (f"--max-source-positions {cfg.max_source_positions} differs from --max-target-positions "
                    f"{cfg.max_target_positions}: HF {self.model_type} has one max_position_embeddings")
        return None

    def represents(self, cfg: TransformerConfig) -> bool:
        return self.why_not(cfg) is None

    # config.json ------------------------------------------------------------------
    def defaults(self) -> dict[str, Any]:
        import transformers
        return getattr(transformers, self.config_class)().to_dict()

    def cfg_from_hf(self, c: dict[str, Any]) -> TransformerConfig:
        c = {**self.defaults(), **{k: v for k, v in c.items() if v is not None or k.endswith("token_id")}}
        if c["activation_function"] != "relu":
            raise refuse(self.model_type, "activation_function", c["activation_function"], "only relu converts")
        if c.get("pad_token_id") is None:
            raise refuse(self.model_type, "pad_token_id", None, "positions count from the pad id: set it (fairseq: 1)")
        _, _, share_all = self.vocab_from_hf(c)
        d, enc_ffn = c["d_model"], c["encoder_ffn_dim"]
        return TransformerConfig(
            encoder=EncoderConfig(embed_dim=d, ffn_embed_dim=enc_ffn, layers=c["encoder_layers"],
                                  attention_heads=c["encoder_attention_heads"], normalize_before=self.pre_norm),
            # one spelling per model: decoder sizes equal to the encoder's follow it (None)
            decoder=DecoderConfig(ffn_embed_dim=None if c["decoder_ffn_dim"] == enc_ffn else c["decoder_ffn_dim"],
                                  layers=c["decoder_layers"], attention_heads=c["decoder_attention_heads"],
                                  normalize_before=self.pre_norm),
            share_all_embeddings=share_all, dropout=c["dropout"], attention_dropout=c["attention_dropout"],
            activation_dropout=c["activation_dropout"], activation_fn="relu",
            no_scale_embedding=not c["scale_embedding"], max_source_positions=c["max_position_embeddings"],
            max_target_positions=c["max_position_embeddings"])

    def model_sizes(self, c: dict[str, Any]) -> dict[str, int]:
        """What a consolidated folder records to build the model: both vocabularies (vocab_size: the target's)."""
        src, tgt, _ = self.vocab_from_hf({**self.defaults(), **c})
        return {"vocab_size": tgt, "src_vocab_size": src, "tgt_vocab_size": tgt}

    def hf_config(self, cfg: TransformerConfig, *, src_vocab_size: int, tgt_vocab_size: int, **extra: Any):
        """A transformers config equal to ``cfg``; ``extra``: bos/pad/eos_token_id (fairseq's by default),
        ``langs`` (FSMT)."""
        import transformers
        reason = self.why_not(cfg)
        if reason is not None:
            raise BigseqError(f"this transformer config is not HF {self.model_type}: {reason}")
        ids = {**FAIRSEQ_IDS, **{k: v for k, v in extra.items() if k.endswith("token_id") and v is not None}}
        rest = {k: v for k, v in extra.items() if not k.endswith("token_id")}
        return getattr(transformers, self.config_class)(
            d_model=cfg.encoder.embed_dim, encoder_layers=cfg.encoder.layers, decoder_layers=cfg.decoder.layers,
            encoder_ffn_dim=cfg.encoder.ffn_embed_dim, decoder_ffn_dim=cfg.decoder_ffn_dim,
            encoder_attention_heads=cfg.encoder.attention_heads, decoder_attention_heads=cfg.decoder.attention_heads,
            encoder_layerdrop=0.0, decoder_layerdrop=0.0, dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout, activation_dropout=cfg.activation_dropout,
            activation_function="relu", scale_embedding=not cfg.no_scale_embedding,
            max_position_embeddings=cfg.max_source_positions, decoder_start_token_id=ids["eos_token_id"],
            **self.vocab_to_hf(cfg, src_vocab_size, tgt_vocab_size), **ids, **rest)

    # weights ----------------------------------------------------------------------
    def layer_counts(self, cfg: TransformerConfig) -> dict[str, int]:
        return {"encoder": cfg.encoder.layers, "decoder": cfg.decoder.layers}

    def our_aliases(self, cfg: TransformerConfig) -> dict[str, str]:
        # --share-all-embeddings: one nn.Embedding, state_dict lists it under both stacks
        return {"decoder.embed_tokens.weight": "encoder.embed_tokens.weight"} if cfg.share_all_embeddings else {}

    def key_map(self, cfg: TransformerConfig) -> list[Mapping]:
        before, after = self.embedding_map(cfg)
        out = list(before)
        for side, parts in (("encoder", _LAYER + _FFN), ("decoder", _LAYER + _CROSS + _FFN)):
            for ours, theirs in parts:
                for p in ("weight", "bias"):
                    out.append(one(f"{side}.layers.{{i}}.{ours}.{p}", f"model.{side}.layers.{{i}}.{theirs}.{p}",
                                   stack=side))
            if self.pre_norm:
                out += [one(f"{side}.final_norm.{p}", f"model.{side}.layer_norm.{p}") for p in ("weight", "bias")]
        return out + after


def generation_config(hf_config) -> dict[str, Any]:
    """fairseq's decoding conventions for transformers' generate: start from eos, beam 5 stopping once 5
    hypotheses are finished (``early_stopping=True`` is fairseq's rule), length penalty 1, at most 200
    tokens (fairseq's --max-len-b), eos forced at the limit (fairseq forces it too, but keeps its real
    log-probability where HF scores it 0)."""
    eos = hf_config.eos_token_id
    return {"bos_token_id": hf_config.bos_token_id, "pad_token_id": hf_config.pad_token_id, "eos_token_id": eos,
            "decoder_start_token_id": eos, "forced_eos_token_id": eos, "num_beams": 5, "early_stopping": True,
            "length_penalty": 1.0, "max_length": 200}
