"""HuggingFace transformers interop of transformer_lm: one adapter per HF model type (base.py is the
shared key-map engine). Import picks the adapter by config.json's ``model_type``; export picks the
first model type that represents the bigseq config exactly, so the Llama derivatives come before
llama, the fallback for a plain Llama config; phi3 comes after llama and mistral, which compute the
same as a Phi-3 without longrope or partial rotary (see phi3.py). Gemma 3's multimodal type is refused
with a line saying to extract its text model (gemma3_text)."""

from __future__ import annotations

from typing import Any

import torch

from bigseq.errors import BigseqError
from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.hf.base import HFAdapter
from bigseq.models.transformer_lm.hf.gemma2 import Gemma2Adapter
from bigseq.models.transformer_lm.hf.gemma3 import MULTIMODAL, Gemma3TextAdapter
from bigseq.models.transformer_lm.hf.gpt2 import GPT2Adapter
from bigseq.models.transformer_lm.hf.llama import LlamaAdapter
from bigseq.models.transformer_lm.hf.mistral import MistralAdapter
from bigseq.models.transformer_lm.hf.olmo2 import Olmo2Adapter
from bigseq.models.transformer_lm.hf.phi3 import Phi3Adapter
from bigseq.models.transformer_lm.hf.qwen2 import Qwen2Adapter
from bigseq.models.transformer_lm.hf.qwen3 import Qwen3Adapter

ADAPTERS: dict[str, HFAdapter] = {a.model_type: a for a in (GPT2Adapter(), Qwen3Adapter(), Qwen2Adapter(),
                                                             MistralAdapter(), Gemma3TextAdapter(), Gemma2Adapter(),
                                                             Olmo2Adapter(), LlamaAdapter(), Phi3Adapter())}
HF_MODEL_TYPES = tuple(ADAPTERS)
"""transformers model types transformer_lm converts (config.json's model_type)."""


def adapter_for_hf(c: dict[str, Any]) -> HFAdapter:
    model_type = c.get("model_type")
    if model_type == "gemma3":
        raise BigseqError(MULTIMODAL)
    if model_type not in ADAPTERS:
        raise BigseqError(f"HF model_type '{model_type}' is not supported by transformer_lm; "
                          f"it converts {', '.join(HF_MODEL_TYPES)}")
    return ADAPTERS[model_type]


def adapter_for_cfg(cfg: TransformerLMConfig, model_type: str | None = None) -> HFAdapter:
    """The HF model type that computes what ``cfg`` does (or ``model_type``'s adapter, if it computes
    that); BigseqError if none."""
    if model_type is not None:
        adapter = adapter_for_hf({"model_type": model_type})
        if not adapter.represents(cfg):
            raise BigseqError(f"HF {model_type} does not compute this transformer_lm config; drop the model type "
                              f"to export as the one that does")
        return adapter
    for adapter in ADAPTERS.values():
        if adapter.represents(cfg):
            return adapter
    raise BigseqError("this transformer_lm config has no HF equivalent; HF export needs GPT-2 style (pre-norm, "
                      "learned positions, layernorm, biases, gelu) or Llama style (pre-norm, rope, rmsnorm, swiglu), "
                      "with --no-scale-embedding and no --layernorm-embedding; Llama style with q/k/v biases only "
                      "is qwen2, with --qk-norm head qwen3, with --sliding-window on every layer and no biases "
                      "mistral (qwen2/qwen3 slide only their last layers); Gemma style (--decoder-norm-placement "
                      "sandwich, --norm rmsnorm_unit_offset, geglu_tanh or geglu, scaled embeddings with "
                      "--embed-scale-in-weight-dtype, no MLP bias) is gemma2, with --qk-norm head gemma3_text; "
                      "Llama style with --decoder-norm-placement output, --norm rmsnorm_fp32, --qk-norm full and "
                      "no MLP bias is olmo2; Llama style with --rope-scaling longrope or "
                      "--rope-partial-factor, no biases, heads of --decoder-embed-dim / --decoder-attention-heads "
                      "and a window on every layer or none is phi3")


def cfg_from_hf_config(hf_config) -> TransformerLMConfig:
    """A transformers config (or its config.json dict) -> TransformerLMConfig."""
    c = hf_config if isinstance(hf_config, dict) else hf_config.to_dict()
    return adapter_for_hf(c).cfg_from_hf(c)


def hf_config_from_cfg(cfg: TransformerLMConfig, model_type: str | None = None, **token_ids: Any):
    """A transformers config equal to ``cfg`` (token_ids: bos/eos/pad_token_id), of ``model_type``
    if given (else the first that computes ``cfg``)."""
    if cfg.vocab_size is None:
        raise BigseqError("HF export needs the vocabulary size; set cfg.vocab_size (the task fills it)")
    return adapter_for_cfg(cfg, model_type).hf_config(cfg, **token_ids)


def to_hf_state_dict(model_or_sd, cfg: TransformerLMConfig, model_type: str | None = None) -> dict[str, torch.Tensor]:
    """Our model (or its state dict) -> the HF model's state dict; with tied embeddings the head is listed
    as the embedding tensor itself, as in HF's own state_dict."""
    sd = model_or_sd.state_dict() if isinstance(model_or_sd, torch.nn.Module) else model_or_sd
    return adapter_for_cfg(cfg, model_type).to_hf_state_dict(sd, cfg)


def from_hf_state_dict(hf_sd: dict[str, torch.Tensor], cfg: TransformerLMConfig,
                       model_type: str | None = None) -> dict[str, torch.Tensor]:
    """An HF state dict -> ours (load with model.load_state_dict)."""
    return adapter_for_cfg(cfg, model_type).from_hf_state_dict(hf_sd, cfg)
