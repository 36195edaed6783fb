"""RoPE settings of a config.json in both styles: transformers 5's ``rope_parameters`` and 4's
``rope_theta`` + ``rope_scaling``.

Import reads either (``rope_scaling`` first, as both majors do when a file has both); export
writes both, because each major reads only its own keys and silently falls back to theta 10000
without scaling when they are missing.
"""

from __future__ import annotations

from typing import Any

from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.hf.base import refuse

LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def rope_settings(c: dict[str, Any]) -> dict[str, Any]:
    """One flat dict with rope_type and rope_theta, whichever style ``c`` uses."""
    rope = dict(c.get("rope_scaling") or c.get("rope_parameters") or {})
    rope.setdefault("rope_type", rope.pop("type", "default"))
    rope.setdefault("rope_theta", c.get("rope_theta", 10000.0))
    return rope


def rope_fields(c: dict[str, Any], model_type: str) -> dict[str, Any]:
    """The TransformerLMConfig fields of a config.json's RoPE; refuses what bigseq does not compute."""
    rope = rope_settings(c)
    if any(isinstance(v, dict) for v in rope.values()):
        raise refuse(model_type, "rope_parameters", "per layer type", "one RoPE for every layer converts")
    partial = rope.get("partial_rotary_factor", c.get("partial_rotary_factor", 1.0))
    if partial not in (None, 1.0):
        raise refuse(model_type, "partial_rotary_factor", partial, "only RoPE over the whole head converts")
    fields: dict[str, Any] = {"rope_theta": float(rope["rope_theta"])}
    if rope["rope_type"] == "default":
        return fields
    if rope["rope_type"] != "llama3":
        raise refuse(model_type, "rope_type", rope["rope_type"], "default and llama3 RoPE convert")
    # transformers prefers a top-level original_max_position_embeddings (Phi-3 style) and falls back
    # to max_position_embeddings for the pretraining length; so does this
    if c.get("original_max_position_embeddings") is not None:
        rope["original_max_position_embeddings"] = c["original_max_position_embeddings"]
    rope.setdefault("original_max_position_embeddings", c.get("max_position_embeddings"))
    for key in LLAMA3_KEYS:
        if rope.get(key) is None:
            raise refuse(model_type, f"rope_scaling.{key}", None, "llama3 RoPE needs all of " + ", ".join(LLAMA3_KEYS))
    return {**fields, "rope_scaling": "llama3", "rope_scaling_factor": float(rope["factor"]),
            "rope_low_freq_factor": float(rope["low_freq_factor"]),
            "rope_high_freq_factor": float(rope["high_freq_factor"]),
            "rope_original_max_positions": int(rope["original_max_position_embeddings"])}


def _legacy_scaling(cfg: TransformerLMConfig) -> dict[str, Any] | None:
    if cfg.rope_scaling == "none":
        return None
    return {"rope_type": "llama3", "factor": cfg.rope_scaling_factor, "low_freq_factor": cfg.rope_low_freq_factor,
            "high_freq_factor": cfg.rope_high_freq_factor,
            "original_max_position_embeddings": cfg.rope_original_max_positions}


def rope_parameters(cfg: TransformerLMConfig) -> dict[str, Any]:
    """transformers 5's ``rope_parameters`` of ``cfg``."""
    return {"rope_theta": cfg.rope_theta, **(_legacy_scaling(cfg) or {"rope_type": "default"})}


def with_legacy_rope_keys(hf_config, cfg: TransformerLMConfig):
    """``hf_config`` that also serializes 4.x's ``rope_theta`` and ``rope_scaling``.

    transformers 5 turns ``rope_scaling`` into a property aliasing ``rope_parameters`` and leaves it
    out of config.json, so the keys go into the instance dict, which is what ``to_dict`` writes.
    """
    hf_config.__dict__["rope_theta"] = cfg.rope_theta
    hf_config.__dict__["rope_scaling"] = _legacy_scaling(cfg)
    return hf_config
