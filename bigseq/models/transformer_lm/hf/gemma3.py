"""Gemma3ForCausalLM (``model_type: gemma3_text``): Gemma 2 (gemma2.py) plus Gemma RMSNorms on each head of
q and k before RoPE (``--qk-norm head``), no soft-capping unless the file sets it, five sliding layers to one
full (``sliding_window_pattern`` 6 when ``layer_types`` is missing), and a RoPE per layer type.

transformers 5 writes ``rope_parameters: {"sliding_attention": {...}, "full_attention": {...}}``; 4.x wrote
``rope_theta`` (full layers, 1e6 by default), ``rope_local_base_freq`` (sliding layers, 1e4) and
``rope_scaling`` (full layers only). bigseq's --rope-theta/--rope-scaling are the full layers' RoPE and
--rope-local-theta the sliding layers' (default RoPE, no scaling); None when they equal the full layers'.
The full layers may carry ``linear`` scaling (the larger Gemma 3 models: factor 8); other types are refused.

The multimodal checkpoints (``model_type: gemma3``, Gemma3ForConditionalGeneration) are refused with a
line saying to extract the text model: their text weights live under ``model.language_model.*``.
"""

from __future__ import annotations

from typing import Any

from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.hf.base import refuse
from bigseq.models.transformer_lm.hf.gemma2 import Gemma2Adapter, gemma_style
from bigseq.models.transformer_lm.hf.llama import sliding_layers

DEFAULT_THETA = {"full_attention": 1_000_000.0, "sliding_attention": 10_000.0}  # Gemma3TextConfig.default_theta
EXTRACT_TEXT_MODEL = ("transformer_lm converts the text model only: extract it as a gemma3_text Gemma3ForCausalLM "
                      "(config.text_config, the model.language_model.* weights and lm_head) and convert that")
MULTIMODAL = ("HF model_type 'gemma3' (Gemma3ForConditionalGeneration, multimodal) is not converted; "
              + EXTRACT_TEXT_MODEL)
"""The refusal of the multimodal model type (hf/__init__.py raises it for ``model_type: gemma3``)."""


def _rope(d: dict[str, Any], layer_type: str, model_type: str) -> tuple[float, str, float | None]:
    """(theta, scaling, factor) of one layer type's RoPE dict."""
    kind = d.get("rope_type", d.get("type", "default"))
    theta = float(d.get("rope_theta", DEFAULT_THETA[layer_type]))
    if d.get("partial_rotary_factor") not in (None, 1.0):
        raise refuse(model_type, f"rope_parameters.{layer_type}.partial_rotary_factor", d["partial_rotary_factor"],
                     "only RoPE over the whole head converts")
    if kind == "default":
        return theta, "none", None
    if kind == "linear" and d.get("factor"):
        return theta, "linear", float(d["factor"])
    raise refuse(model_type, f"rope_parameters.{layer_type}.rope_type", kind, "default and linear (with a factor) "
                 "RoPE convert")


class Gemma3TextAdapter(Gemma2Adapter):
    model_type = "gemma3_text"
    config_class = "Gemma3TextConfig"
    qk_norm = "head"
    default_max_positions = 131_072
    default_softcaps = (None, None)
    sliding_pattern = 6

    def represents(self, cfg: TransformerLMConfig) -> bool:
        # a scaled full RoPE needs the sliding layers' own (4.x's keys scale only the full layers)
        return (gemma_style(cfg) and cfg.qk_norm == "head" and cfg.rope_scaling in ("none", "linear")
                and (cfg.rope_scaling == "none" or cfg.rope_local_theta is not None or not sliding_layers(cfg)))

    def cfg_from_hf(self, c: dict[str, Any]) -> TransformerLMConfig:
        if "text_config" in c or any("ConditionalGeneration" in a for a in c.get("architectures") or ()):
            raise refuse(self.model_type, "architectures", c.get("architectures"), EXTRACT_TEXT_MODEL)
        return super().cfg_from_hf(c)

    def rope_from_hf(self, c: dict[str, Any], sliding: bool) -> dict[str, Any]:
        rope = c.get("rope_parameters")
        if c.get("partial_rotary_factor") not in (None, 1.0):
            raise refuse(self.model_type, "partial_rotary_factor", c["partial_rotary_factor"],
                         "only RoPE over the whole head converts")
        if rope and not set(rope) <= set(DEFAULT_THETA):
            raise refuse(self.model_type, "rope_parameters", sorted(rope), "give one dict per layer type "
                         "(sliding_attention, full_attention)")
        if rope:
            full, local = dict(rope.get("full_attention") or {}), dict(rope.get("sliding_attention") or {})
        else:  # 4.x's keys, read as Gemma3TextConfig.convert_rope_params_to_dict reads them
            full = {**(c.get("rope_scaling") or {})}
            full.setdefault("rope_theta", c.get("rope_theta", DEFAULT_THETA["full_attention"]))
            local = {"rope_theta": c.get("rope_local_base_freq", DEFAULT_THETA["sliding_attention"])}
        theta, scaling, factor = _rope(full, "full_attention", self.model_type)
        fields: dict[str, Any] = {"rope_theta": theta}
        if scaling == "linear":
            fields.update(rope_scaling="linear", rope_scaling_factor=factor)
        local_rope = _rope(local, "sliding_attention", self.model_type)
        if sliding and local_rope != (theta, scaling, factor):
            if local_rope[1] != "none":
                raise refuse(self.model_type, "rope_parameters.sliding_attention.rope_type", local_rope[1],
                             "the sliding layers' RoPE is default or the full layers' one")
            fields["rope_local_theta"] = local_rope[0]
        return fields

    def rope_hf_config(self, cfg: TransformerLMConfig) -> dict[str, Any]:
        full = {"rope_type": "default", "rope_theta": cfg.rope_theta}
        if cfg.rope_scaling == "linear":
            full.update(rope_type="linear", factor=cfg.rope_scaling_factor)
        local = (dict(full) if cfg.rope_local_theta is None
                 else {"rope_type": "default", "rope_theta": cfg.rope_local_theta})
        return {"rope_parameters": {"sliding_attention": local, "full_attention": full}}

    def with_legacy_keys(self, hf_config, cfg: TransformerLMConfig):
        """4.x's ``rope_theta``, ``rope_local_base_freq`` and ``rope_scaling`` too (see rope.py)."""
        hf_config.__dict__["rope_theta"] = cfg.rope_theta
        hf_config.__dict__["rope_local_base_freq"] = cfg.rope_local_theta or cfg.rope_theta
        hf_config.__dict__["rope_scaling"] = ({"rope_type": "linear", "factor": cfg.rope_scaling_factor}
                                              if cfg.rope_scaling == "linear" else None)
        return hf_config
