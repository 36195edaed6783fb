"""Qwen2ForCausalLM (Qwen2, Qwen2.5): Llama with biases on q/k/v only, and an optional sliding window on
the layers from ``max_window_layers`` on (or as ``layer_types`` lists them).

The window is on only with ``use_sliding_window: true``; transformers nulls ``sliding_window`` otherwise.
Export writes ``max_window_layers`` (which 4.x reads) and lets the config derive ``layer_types``, so a
model whose sliding layers are not the last ones has no Qwen equivalent.
"""

from __future__ import annotations

from typing import Any

from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.hf.base import refuse
from bigseq.models.transformer_lm.hf.llama import LlamaAdapter, llama_style, sliding_layers

LAYER_TYPES = ("full_attention", "sliding_attention")


def slide_only_at_the_end(cfg: TransformerLMConfig) -> bool:
    """Whether the sliding layers (if any) are the last ones, the only layout max_window_layers says."""
    sliding = sliding_layers(cfg)
    return sliding == list(range(cfg.decoder_layers - len(sliding), cfg.decoder_layers))


class Qwen2Adapter(LlamaAdapter):
    model_type = "qwen2"
    config_class = "Qwen2Config"

    def represents(self, cfg: TransformerLMConfig) -> bool:
        return (llama_style(cfg) and cfg.qk_norm == "none" and cfg.uses_qkv_bias and not cfg.uses_out_bias
                and not cfg.uses_mlp_bias and slide_only_at_the_end(cfg))

    def biases_from_hf(self, c: dict[str, Any]) -> tuple[bool, bool, bool]:
        return True, False, False  # q/k/v are built with bias=True, o_proj and the MLP without

    def sliding_from_hf(self, c: dict[str, Any]) -> tuple[int | None, list[int] | None]:
        layers = c["num_hidden_layers"]
        window = c.get("sliding_window") if c.get("use_sliding_window", False) else None
        # transformers derives the layer types this way when the file lists none
        types = c.get("layer_types") or ["sliding_attention" if window is not None and i >= c.get(
            "max_window_layers", 28) else "full_attention" for i in range(layers)]
        if len(types) != layers or not set(types) <= set(LAYER_TYPES):
            raise refuse(self.model_type, "layer_types", types, f"give {layers} of {', '.join(LAYER_TYPES)}")
        sliding = [i for i, t in enumerate(types) if t == "sliding_attention"]
        if sliding and window is None:  # transformers itself fails on this
            raise refuse(self.model_type, "layer_types", types, "sliding layers need use_sliding_window and "
                         "a sliding_window")
        if not sliding:
            return None, None
        return window, None if len(sliding) == layers else sliding

    def family_hf_config(self, cfg: TransformerLMConfig) -> dict[str, Any]:
        sliding = sliding_layers(cfg)
        return {"use_sliding_window": bool(sliding), "sliding_window": cfg.sliding_window if sliding else None,
                "max_window_layers": cfg.decoder_layers - len(sliding)}
