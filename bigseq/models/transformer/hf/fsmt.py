"""FSMTForConditionalGeneration: fairseq's post-norm ``transformer`` one to one (the state dict is
``"model." + fairseq key``), sinusoidal positions, a source and a target vocabulary of their own.

Tying in transformers 5 (and 4) is all or nothing: ``tie_word_embeddings`` makes the encoder embedding
and the output projection the decoder embedding, which is --share-all-embeddings. A model with only
--share-decoder-input-output-embed exports untied, the output projection written as a copy of the
decoder embedding (same logits; the tie is lost for training in HF, and importing it back gives an
untied config). The sinusoidal tables are parameters in FSMT (``embed_positions.weight``): written on
export as FSMT computes them, absent from older files, and refused on import if they were trained.
"""

from __future__ import annotations

from typing import Any

import torch

from bigseq.models.transformer.config import TransformerConfig
from bigseq.models.transformer.hf.common import Seq2SeqAdapter, duplicate, sinusoidal_table
from bigseq.models.transformer_lm.hf.base import Mapping, group, one, refuse


class FSMTAdapter(Seq2SeqAdapter):
    model_type = "fsmt"
    config_class = "FSMTConfig"
    pre_norm = False

    def vocab_from_hf(self, c: dict[str, Any]) -> tuple[int, int, bool]:
        src, tgt, tied = c["src_vocab_size"], c["tgt_vocab_size"], bool(c.get("tie_word_embeddings"))
        if tied and src != tgt:
            raise refuse("fsmt", "tie_word_embeddings", True, f"it ties a source vocabulary of {src} to a target "
                         f"one of {tgt}; the checkpoint is inconsistent")
        return src, tgt, tied

    def vocab_to_hf(self, cfg: TransformerConfig, src_vocab_size: int, tgt_vocab_size: int) -> dict[str, Any]:
        return {"src_vocab_size": src_vocab_size, "tgt_vocab_size": tgt_vocab_size,
                "tie_word_embeddings": cfg.share_all_embeddings}

    def hf_config(self, cfg: TransformerConfig, *, src_vocab_size: int, tgt_vocab_size: int, **extra: Any):
        extra.setdefault("langs", ["src", "tgt"])
        return super().hf_config(cfg, src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, **extra)

    def embedding_map(self, cfg: TransformerConfig) -> tuple[list[Mapping], list[Mapping]]:
        if cfg.share_all_embeddings:  # HF saves the tied table under the decoder's name
            return [one("encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight")], []
        before = [one("encoder.embed_tokens.weight", "model.encoder.embed_tokens.weight")]
        if cfg.share_decoder_input_output_embed:
            return before, [group(("decoder.embed_tokens.weight",), ("model.decoder.embed_tokens.weight",
                                  "model.decoder.output_projection.weight"), duplicate("decoder embedding"))]
        return before, [one("decoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"),
                        one("decoder.output_projection.weight", "model.decoder.output_projection.weight")]

    def hf_aliases(self, cfg: TransformerConfig) -> dict[str, str]:
        if not cfg.share_all_embeddings:
            return {}
        return dict.fromkeys(("model.encoder.embed_tokens.weight", "model.decoder.output_projection.weight"),
                             "model.decoder.embed_tokens.weight")

    def fixed_hf_tensors(self, cfg: TransformerConfig, dtype: torch.dtype, pad_idx: int | None = 1
                         ) -> dict[str, torch.Tensor]:
        pad = 1 if pad_idx is None else pad_idx
        table = sinusoidal_table(cfg.max_source_positions + pad + 1, cfg.encoder.embed_dim, pad).to(dtype)
        return {"model.encoder.embed_positions.weight": table, "model.decoder.embed_positions.weight": table.clone()}
