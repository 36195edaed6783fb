"""M2M100ForConditionalGeneration (NLLB's dense models too): fairseq's pre-norm ``transformer`` with
its final encoder and decoder LayerNorms and sinusoidal positions (a non-persistent buffer: no
tensor in the files), over ONE vocabulary: ``model.shared`` is the encoder and decoder embedding and
``lm_head`` its tied copy. So only --share-all-embeddings (a joined dictionary) exports, and only
``tie_word_embeddings: true`` imports: transformers 5 unties all three tables without it while 4 kept
the encoder's and decoder's tied, so an untied file means different models to the two majors.
"""

from __future__ import annotations

from typing import Any

from bigseq.errors import BigseqError
from bigseq.models.transformer.config import TransformerConfig
from bigseq.models.transformer.hf.common import Seq2SeqAdapter
from bigseq.models.transformer_lm.hf.base import Mapping, one, refuse


class M2M100Adapter(Seq2SeqAdapter):
    model_type = "m2m_100"
    config_class = "M2M100Config"
    pre_norm = True

    def why_not(self, cfg: TransformerConfig) -> str | None:
        if not cfg.share_all_embeddings:
            return ("--share-all-embeddings is off: HF m2m_100 has one embedding table for source, target and "
                    "output (train with a joined dictionary and --share-all-embeddings)")
        return super().why_not(cfg)

    def vocab_from_hf(self, c: dict[str, Any]) -> tuple[int, int, bool]:
        if not c.get("tie_word_embeddings", True):
            raise refuse("m2m_100", "tie_word_embeddings", False, "transformers 4 and 5 build different models "
                         "from it; only tied M2M100 checkpoints convert")
        return c["vocab_size"], c["vocab_size"], True

    def vocab_to_hf(self, cfg: TransformerConfig, src_vocab_size: int, tgt_vocab_size: int) -> dict[str, Any]:
        if src_vocab_size != tgt_vocab_size:
            raise BigseqError(f"HF m2m_100 has one vocabulary; this model has {src_vocab_size} source and "
                              f"{tgt_vocab_size} target tokens (train with a joined dictionary)")
        return {"vocab_size": tgt_vocab_size, "tie_word_embeddings": True}

    def hf_config(self, cfg: TransformerConfig, *, src_vocab_size: int, tgt_vocab_size: int, **extra: Any):
        extra.pop("langs", None)  # FSMT's field; M2M100 names languages with tokens of its vocabulary
        return super().hf_config(cfg, src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, **extra)

    def embedding_map(self, cfg: TransformerConfig) -> tuple[list[Mapping], list[Mapping]]:
        return [one("encoder.embed_tokens.weight", "model.shared.weight")], []

    def hf_aliases(self, cfg: TransformerConfig) -> dict[str, str]:
        return dict.fromkeys(("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight",
                              "lm_head.weight"), "model.shared.weight")
