"""HuggingFace transformers interop of the encoder-decoder ``transformer``: FSMT (post-norm, any
vocabularies) and M2M100 (pre-norm, one shared table). Import picks the adapter by config.json's
``model_type``; export picks the one model type that computes the config, or says which flag stops
each. The other HF encoder-decoders are refused by name with what differs from fairseq's
``transformer`` (the same engine as transformer_lm: models/transformer_lm/hf/base.py).

Tokenizers: transformers' FSMTTokenizer wants fastBPE files (vocab-src.json, vocab-tgt.json,
merges.txt, plus sacremoses) and M2M100Tokenizer a sentencepiece model with language tokens; bigseq
writes neither. A data dir's tokenizer.json travels with the export and is declared a
PreTrainedTokenizerFast (checkpoint/hf_files.py), which serves a joined vocabulary; with separate
vocabularies, or a fairseq dictionary of whitespace tokens, users tokenize the text themselves and
map tokens through the dict files (ids are the dictionary's: <s> 0, <pad> 1, </s> 2, <unk> 3).
"""

from __future__ import annotations

from typing import Any

import torch

from bigseq.errors import BigseqError
from bigseq.models.transformer.config import TransformerConfig
from bigseq.models.transformer.hf.common import Seq2SeqAdapter, generation_config  # noqa: F401
from bigseq.models.transformer.hf.fsmt import FSMTAdapter
from bigseq.models.transformer.hf.m2m_100 import M2M100Adapter

ADAPTERS: dict[str, Seq2SeqAdapter] = {a.model_type: a for a in (FSMTAdapter(), M2M100Adapter())}
HF_MODEL_TYPES = tuple(ADAPTERS)
"""transformers model types the transformer family converts (config.json's model_type)."""
POSITIONS_FROM_PAD = True
"""fairseq's positions count from the pad id: a model fine-tuned on data padded with another id would shift
them (checkpoint/pretrained.check_pad)."""

REFUSED_MODEL_TYPES = {  # HF encoder-decoders that are not fairseq's transformer, and why
    "marian": "its sinusoidal positions are laid out differently, start at 0 and count pads",
    "bart": "it has learned positions (offset 2, pads counted) and an embedding LayerNorm",
    "mbart": "it has learned positions (offset 2, pads counted) and an embedding LayerNorm",
    "t5": "it has relative position buckets and RMSNorm without biases",
    "mt5": "it has relative position buckets and RMSNorm without biases",
    "nllb_moe": "it is a mixture of experts",
}


def adapter_for_hf(c: dict[str, Any]) -> Seq2SeqAdapter:
    model_type = c.get("model_type")
    if model_type in REFUSED_MODEL_TYPES:
        raise BigseqError(f"HF config.json: model_type={model_type!r} is not fairseq's transformer: "
                          f"{REFUSED_MODEL_TYPES[model_type]}; the transformer family converts "
                          f"{', '.join(HF_MODEL_TYPES)}")
    if model_type not in ADAPTERS:
        raise BigseqError(f"HF model_type '{model_type}' is not supported by the transformer family; "
                          f"it converts {', '.join(HF_MODEL_TYPES)}")
    return ADAPTERS[model_type]


def adapter_for_cfg(cfg: TransformerConfig, model_type: str | None = None) -> Seq2SeqAdapter:
    """The HF model type that computes what ``cfg`` does (or ``model_type``'s, if it does); else one line
    naming, per model type, the flag in the way."""
    candidates = [adapter_for_hf({"model_type": model_type})] if model_type else list(ADAPTERS.values())
    reasons = []
    for adapter in candidates:
        reason = adapter.why_not(cfg)
        if reason is None:
            return adapter
        reasons.append(f"{adapter.model_type}: {reason}")
    raise BigseqError(f"this transformer config has no HF equivalent ({'; '.join(reasons)})")


def cfg_from_hf_config(hf_config) -> TransformerConfig:
    """A transformers config (or its config.json dict) -> TransformerConfig."""
    c = hf_config if isinstance(hf_config, dict) else hf_config.to_dict()
    return adapter_for_hf(c).cfg_from_hf(c)


def hf_config_from_cfg(cfg: TransformerConfig, model_type: str | None = None, *, src_vocab_size: int,
                       tgt_vocab_size: int, **extra: Any):
    """A transformers config equal to ``cfg``; extra: bos/pad/eos_token_id (fairseq's by default), langs."""
    return adapter_for_cfg(cfg, model_type).hf_config(cfg, src_vocab_size=src_vocab_size,
                                                      tgt_vocab_size=tgt_vocab_size, **extra)


def to_hf_state_dict(model_or_sd, cfg: TransformerConfig, model_type: str | None = None,
                     pad_idx: int = 1) -> dict[str, torch.Tensor]:
    """Our model (or its state dict) -> the HF model's state dict, tied copies listed as HF lists them."""
    sd = model_or_sd.state_dict() if isinstance(model_or_sd, torch.nn.Module) else model_or_sd
    return adapter_for_cfg(cfg, model_type).to_hf_state_dict(sd, cfg, pad_idx)


def from_hf_state_dict(hf_sd: dict[str, torch.Tensor], cfg: TransformerConfig, model_type: str | None = None,
                       pad_idx: int = 1) -> dict[str, torch.Tensor]:
    """An HF state dict -> ours (load with model.load_state_dict; a shared table under both names)."""
    return adapter_for_cfg(cfg, model_type).from_hf_state_dict(hf_sd, cfg, pad_idx)
