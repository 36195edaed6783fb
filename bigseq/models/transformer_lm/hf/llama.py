"""LlamaForCausalLM (Llama 2 style: default RoPE): pre-norm RMSNorm, SwiGLU, grouped-query attention.

HF Llama checkpoints keep q/k in the rotate_half RoPE layout, the one bigseq uses: no permutation.
"""

from __future__ import annotations

from typing import Any

from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.hf.base import HFAdapter, Mapping, one, refuse

_PROJECTIONS = [("attn.q_proj", "self_attn.q_proj"), ("attn.k_proj", "self_attn.k_proj"),
                ("attn.v_proj", "self_attn.v_proj"), ("attn.out_proj", "self_attn.o_proj"),
                ("ffn.gate_proj", "mlp.gate_proj"), ("ffn.up_proj", "mlp.up_proj"), ("ffn.down_proj", "mlp.down_proj")]


def rope_settings(c: dict[str, Any]) -> dict[str, Any]:
    """RoPE settings of a config.json in either style: transformers 5's ``rope_parameters`` or 4's
    ``rope_theta`` + ``rope_scaling``."""
    rope = dict(c.get("rope_parameters") or c.get("rope_scaling") or {})
    rope.setdefault("rope_type", rope.pop("type", "default"))
    rope.setdefault("rope_theta", c.get("rope_theta", 10000.0))
    return rope


class LlamaAdapter(HFAdapter):
    model_type = "llama"

    def represents(self, cfg: TransformerLMConfig) -> bool:
        return (cfg.decoder_normalize_before and cfg.has_final_norm and not cfg.layernorm_embedding
                and cfg.no_scale_embedding and cfg.position_kind == "rope" and cfg.norm == "rmsnorm"
                and cfg.activation_fn == "swiglu")

    def cfg_from_hf(self, c: dict[str, Any]) -> TransformerLMConfig:
        d, heads = c["hidden_size"], c["num_attention_heads"]
        kv_heads = c.get("num_key_value_heads") or heads
        rope = rope_settings(c)
        if rope["rope_type"] != "default":
            raise refuse(self.model_type, "rope_type", rope["rope_type"], "only default RoPE converts")
        if c.get("head_dim") not in (None, d // heads):
            raise refuse(self.model_type, "head_dim", c["head_dim"],
                         "head_dim must be hidden_size / num_attention_heads")
        if c.get("hidden_act", "silu") != "silu":
            raise refuse(self.model_type, "hidden_act", c["hidden_act"], "only silu (SwiGLU) converts")
        if bool(c.get("attention_bias", False)) != bool(c.get("mlp_bias", False)):
            raise refuse(self.model_type, "attention_bias != mlp_bias", (c.get("attention_bias"), c.get("mlp_bias")),
                         "bigseq has one bias switch for both")
        return TransformerLMConfig(
            decoder_layers=c["num_hidden_layers"], decoder_embed_dim=d, decoder_ffn_embed_dim=c["intermediate_size"],
            decoder_attention_heads=heads, decoder_kv_heads=kv_heads if kv_heads != heads else None,
            activation_fn="swiglu", positions="rope", rope_theta=float(rope["rope_theta"]),
            norm="rmsnorm", norm_eps=c.get("rms_norm_eps", 1e-6), bias=bool(c.get("attention_bias", False)),
            decoder_normalize_before=True, no_scale_embedding=True,
            share_decoder_input_output_embed=bool(c.get("tie_word_embeddings", False)), dropout=0.0,
            max_target_positions=c.get("max_position_embeddings", 2048), vocab_size=c["vocab_size"],
            init_std=c.get("initializer_range", 0.02))

    def hf_config(self, cfg: TransformerLMConfig, **token_ids: Any):
        from transformers import LlamaConfig
        return LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.decoder_embed_dim,
                           intermediate_size=cfg.decoder_ffn_embed_dim, num_hidden_layers=cfg.decoder_layers,
                           num_attention_heads=cfg.decoder_attention_heads, num_key_value_heads=cfg.kv_heads,
                           head_dim=cfg.head_dim, hidden_act="silu", max_position_embeddings=cfg.max_target_positions,
                           rms_norm_eps=cfg.norm_eps, initializer_range=cfg.init_std,
                           tie_word_embeddings=cfg.share_decoder_input_output_embed,
                           rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
                           attention_bias=cfg.bias, mlp_bias=cfg.bias, attention_dropout=0.0, **token_ids)

    def tied_head(self, cfg: TransformerLMConfig) -> tuple[str, str] | None:
        return ("lm_head.weight", "model.embed_tokens.weight") if cfg.share_decoder_input_output_embed else None

    def key_map(self, cfg: TransformerLMConfig) -> list[Mapping]:
        h = "model.layers.{i}."
        out = [one("embed.tokens.weight", "model.embed_tokens.weight"),
               one("layers.{i}.attn_norm.weight", h + "input_layernorm.weight"),
               one("layers.{i}.ffn_norm.weight", h + "post_attention_layernorm.weight")]
        for ours, theirs in _PROJECTIONS:
            out.append(one(f"layers.{{i}}.{ours}.weight", f"{h}{theirs}.weight"))
            if cfg.bias:
                out.append(one(f"layers.{{i}}.{ours}.bias", f"{h}{theirs}.bias"))
        out.append(one("final_norm.weight", "model.norm.weight"))
        if not cfg.share_decoder_input_output_embed:
            out.append(one("output_projection.weight", "lm_head.weight"))
        return out
