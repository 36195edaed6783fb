"""MistralForCausalLM: Llama without any bias, with a sliding window on every layer.

Its attention mask is ``kv_idx > q_idx - sliding_window``: a query sees itself and the
sliding_window - 1 keys before it, bigseq's convention. transformers applies the window to every
layer whatever ``layer_types`` says (it only warns), so import does the same. A checkpoint with
``sliding_window: null`` is plain Llama and exports as llama.
"""

from __future__ import annotations

from typing import Any

from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.hf.llama import LlamaAdapter, llama_style, sliding_layers


class MistralAdapter(LlamaAdapter):
    model_type = "mistral"
    config_class = "MistralConfig"

    def represents(self, cfg: TransformerLMConfig) -> bool:
        return (llama_style(cfg) and cfg.qk_norm == "none" and sliding_layers(cfg) == list(range(cfg.decoder_layers))
                and not (cfg.uses_qkv_bias or cfg.uses_out_bias or cfg.uses_mlp_bias))

    def biases_from_hf(self, c: dict[str, Any]) -> tuple[bool, bool, bool]:
        return False, False, False  # every projection is built with bias=False

    def sliding_from_hf(self, c: dict[str, Any]) -> tuple[int | None, list[int] | None]:
        return c.get("sliding_window"), None

    def family_hf_config(self, cfg: TransformerLMConfig) -> dict[str, Any]:
        return {"sliding_window": cfg.sliding_window}
