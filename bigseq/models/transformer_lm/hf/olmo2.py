"""Olmo2ForCausalLM: Llama's projections with OLMo 2's norms.

- no ``input_layernorm``: each sublayer's output is normalized before the residual add, h + norm(f(h))
  (``--decoder-norm-placement output``; ``post_attention_layernorm`` and ``post_feedforward_layernorm`` are
  bigseq's attn_post_norm and ffn_post_norm), and ``model.norm`` closes the stack;
- its RMSNorm multiplies weight * x in fp32, then casts (``--norm rmsnorm_fp32``);
- ``q_norm``/``k_norm`` of that kind over the whole q and k projections (all heads), before RoPE
  (``--qk-norm full``).
One ``attention_bias`` switch covers q/k/v/o; the MLP has none. ``head_dim`` is read when a file has one
(transformers' attention takes it), else hidden_size / heads. RoPE as Llama's (default or llama3).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.hf.base import Mapping, one
from bigseq.models.transformer_lm.hf.llama import LlamaAdapter, sliding_layers


class Olmo2Adapter(LlamaAdapter):
    model_type = "olmo2"
    config_class = "Olmo2Config"
    qk_norm = "full"

    def represents(self, cfg: TransformerLMConfig) -> bool:
        return (cfg.norm_placement == "output" and cfg.has_final_norm and cfg.norm == "rmsnorm_fp32"
                and cfg.qk_norm == "full" and not cfg.layernorm_embedding and cfg.no_scale_embedding
                and cfg.position_kind == "rope" and cfg.activation_fn == "swiglu" and not sliding_layers(cfg)
                and cfg.uses_qkv_bias == cfg.uses_out_bias and not cfg.uses_mlp_bias
                and cfg.attn_logit_softcap is None and cfg.final_logit_softcap is None
                and cfg.query_pre_attn_scalar is None and cfg.rope_local_theta is None
                and cfg.rope_scaling in ("none", "llama3") and cfg.rope_partial_factor == 1.0)

    def biases_from_hf(self, c: dict[str, Any]) -> tuple[bool, bool, bool]:
        attention = bool(c.get("attention_bias", False))
        return attention, attention, False  # the MLP is built with bias=False

    def family_hf_config(self, cfg: TransformerLMConfig) -> dict[str, Any]:
        return {"attention_bias": cfg.uses_qkv_bias}

    def cfg_from_hf(self, c: dict[str, Any]) -> TransformerLMConfig:
        return dataclasses.replace(super().cfg_from_hf(c), norm="rmsnorm_fp32", norm_eps=c.get("rms_norm_eps", 1e-5),
                                   decoder_normalize_before=False, decoder_norm_placement="output")

    def layer_norms(self, h: str) -> list[Mapping]:
        return [one("layers.{i}.attn_post_norm.weight", h + "post_attention_layernorm.weight"),
                one("layers.{i}.ffn_post_norm.weight", h + "post_feedforward_layernorm.weight")]
