"""RoPE settings of a config.json in both styles: transformers 5's ``rope_parameters`` and 4's
``rope_theta`` + ``rope_scaling``.

Import reads either (``rope_scaling`` first, as both majors do when a file has both); export
writes both, because each major reads only its own keys and silently falls back to theta 10000
without scaling when they are missing. ``partial_rotary_factor`` lives in ``rope_parameters`` (5)
or at the top level (4.x); export writes both places. Only model types whose modeling code rotates
part of a head (phi3) take it: Llama, Qwen and Mistral ignore it for default RoPE (their
``compute_default_rope_parameters`` uses the whole head) and break on it otherwise, so import refuses it.
"""

from __future__ import annotations

import math
from typing import Any

from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.hf.base import refuse

LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
LONGROPE_KEYS = ("short_factor", "long_factor", "original_max_position_embeddings")


def rope_settings(c: dict[str, Any]) -> dict[str, Any]:
    """One flat dict with rope_type and rope_theta, whichever style ``c`` uses."""
    rope = dict(c.get("rope_scaling") or c.get("rope_parameters") or {})
    rope.setdefault("rope_type", rope.pop("type", "default"))
    rope.setdefault("rope_theta", c.get("rope_theta", 10000.0))
    return rope


def rope_fields(c: dict[str, Any], model_type: str, rope_types: tuple[str, ...] = ("default", "llama3"),
                partial_rotary: bool = False) -> dict[str, Any]:
    """The TransformerLMConfig fields of a config.json's RoPE; refuses what bigseq does not compute, and
    what ``model_type`` does not (``rope_types``; ``partial_rotary``: whether it honours
    partial_rotary_factor, which Llama-style models ignore or break on)."""
    rope = rope_settings(c)
    if any(isinstance(v, dict) for v in rope.values()):
        raise refuse(model_type, "rope_parameters", "per layer type", "one RoPE for every layer converts")
    partial = rope.get("partial_rotary_factor", c.get("partial_rotary_factor", 1.0))
    partial = 1.0 if partial is None else float(partial)
    if partial != 1.0 and not partial_rotary:
        raise refuse(model_type, "partial_rotary_factor", partial, f"{model_type} rotates the whole head "
                     f"(phi3 rotates a part)")
    fields: dict[str, Any] = {"rope_theta": float(rope["rope_theta"])}
    if partial != 1.0:
        fields["rope_partial_factor"] = partial
    if rope["rope_type"] == "default":
        return fields
    if rope["rope_type"] not in rope_types or rope["rope_type"] not in ("llama3", "longrope"):
        raise refuse(model_type, "rope_type", rope["rope_type"], f"{' and '.join(rope_types)} RoPE convert")
    # transformers prefers a top-level original_max_position_embeddings (Phi-3 style) and falls back
    # to max_position_embeddings for the pretraining length; so does this
    if c.get("original_max_position_embeddings") is not None:
        rope["original_max_position_embeddings"] = c["original_max_position_embeddings"]
    rope.setdefault("original_max_position_embeddings", c.get("max_position_embeddings"))
    if rope["rope_type"] == "longrope":
        return {**fields, **_longrope_fields(rope, c, model_type)}
    for key in LLAMA3_KEYS:
        if rope.get(key) is None:
            raise refuse(model_type, f"rope_scaling.{key}", None, "llama3 RoPE needs all of " + ", ".join(LLAMA3_KEYS))
    return {**fields, "rope_scaling": "llama3", "rope_scaling_factor": float(rope["factor"]),
            "rope_low_freq_factor": float(rope["low_freq_factor"]),
            "rope_high_freq_factor": float(rope["high_freq_factor"]),
            "rope_original_max_positions": int(rope["original_max_position_embeddings"])}


def _longrope_fields(rope: dict[str, Any], c: dict[str, Any], model_type: str) -> dict[str, Any]:
    """transformers' ``_compute_longrope_parameters``: the attention factor is given, or derived from
    ``factor``, or (neither given) from max_position_embeddings / original_max_position_embeddings, which
    bigseq derives from --max-target-positions the same way (rope_attention_factor None)."""
    for key in LONGROPE_KEYS:
        if rope.get(key) is None:
            raise refuse(model_type, f"rope_scaling.{key}", None, "longrope needs all of " + ", ".join(LONGROPE_KEYS))
    original = int(rope["original_max_position_embeddings"])
    attention = rope.get("attention_factor")
    if attention is None and rope.get("factor") is not None:
        factor = float(rope["factor"])
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    return {"rope_scaling": "longrope", "rope_original_max_positions": original,
            "rope_short_factor": [float(f) for f in rope["short_factor"]],
            "rope_long_factor": [float(f) for f in rope["long_factor"]],
            "rope_attention_factor": None if attention is None else float(attention)}


def _legacy_scaling(cfg: TransformerLMConfig) -> dict[str, Any] | None:
    if cfg.rope_scaling == "none":
        return None
    if cfg.rope_scaling == "longrope":
        scaling = {"rope_type": "longrope", "short_factor": list(cfg.rope_short_factor),
                   "long_factor": list(cfg.rope_long_factor),
                   "original_max_position_embeddings": cfg.rope_original_max_positions}
        if cfg.rope_attention_factor is not None:
            scaling["attention_factor"] = cfg.rope_attention_factor
        return scaling
    return {"rope_type": "llama3", "factor": cfg.rope_scaling_factor, "low_freq_factor": cfg.rope_low_freq_factor,
            "high_freq_factor": cfg.rope_high_freq_factor,
            "original_max_position_embeddings": cfg.rope_original_max_positions}


def rope_parameters(cfg: TransformerLMConfig) -> dict[str, Any]:
    """transformers 5's ``rope_parameters`` of ``cfg``."""
    params = {"rope_theta": cfg.rope_theta, **(_legacy_scaling(cfg) or {"rope_type": "default"})}
    if cfg.rope_partial_factor != 1.0:
        params["partial_rotary_factor"] = cfg.rope_partial_factor
    return params


def with_legacy_rope_keys(hf_config, cfg: TransformerLMConfig):
    """``hf_config`` that also serializes 4.x's ``rope_theta`` and ``rope_scaling`` (and its top-level
    ``partial_rotary_factor``, where 4.x Phi-3 reads it).

    transformers 5 turns ``rope_scaling`` into a property aliasing ``rope_parameters`` and leaves it
    out of config.json, so the keys go into the instance dict, which is what ``to_dict`` writes.
    """
    hf_config.__dict__["rope_theta"] = cfg.rope_theta
    hf_config.__dict__["rope_scaling"] = _legacy_scaling(cfg)
    if cfg.rope_partial_factor != 1.0:
        hf_config.__dict__["partial_rotary_factor"] = cfg.rope_partial_factor
    return hf_config
