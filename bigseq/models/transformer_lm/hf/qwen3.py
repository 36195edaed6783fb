"""Qwen3ForCausalLM: Qwen2's layout (sliding window included) with an RMSNorm on each head of q and k
before RoPE (``self_attn.q_norm``/``k_norm``, over head_dim only), one ``attention_bias`` switch for
q/k/v/o, no MLP bias, and a head size of its own (``head_dim``, 128 when the file has none).
"""

from __future__ import annotations

from typing import Any

from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.hf.llama import llama_style
from bigseq.models.transformer_lm.hf.qwen2 import Qwen2Adapter, slide_only_at_the_end

DEFAULT_HEAD_DIM = 128  # Qwen3Config's default, independent of hidden_size


class Qwen3Adapter(Qwen2Adapter):
    model_type = "qwen3"
    config_class = "Qwen3Config"
    qk_norm = "head"

    def represents(self, cfg: TransformerLMConfig) -> bool:
        return (llama_style(cfg) and cfg.qk_norm == "head" and cfg.uses_qkv_bias == cfg.uses_out_bias
                and not cfg.uses_mlp_bias and slide_only_at_the_end(cfg))

    def biases_from_hf(self, c: dict[str, Any]) -> tuple[bool, bool, bool]:
        attention = bool(c.get("attention_bias", False))
        return attention, attention, False

    def head_dim_from_hf(self, c: dict[str, Any]) -> int:
        return c.get("head_dim") or DEFAULT_HEAD_DIM

    def family_hf_config(self, cfg: TransformerLMConfig) -> dict[str, Any]:
        return {**super().family_hf_config(cfg), "attention_bias": cfg.uses_qkv_bias}
