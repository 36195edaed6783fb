"""LlamaForCausalLM (Llama 2 and 3.x): pre-norm RMSNorm, SwiGLU, grouped-query attention, default or llama3
RoPE, a head size of its own (``head_dim``), one bias switch for q/k/v/o and one for the MLP.

HF Llama checkpoints keep q/k in the rotate_half RoPE layout, the one bigseq uses: no permutation.
Mistral, Qwen2 and Qwen3 are Llama with a few deltas; their adapters subclass this one and override
the hooks (biases, head size, sliding window, q/k norm, extra config keys).
Gemma 2/3 and OLMo 2 reuse its projections (gemma2.py, olmo2.py); ``llama_style`` leaves out their
features (``base.plain_layers``), so a config with any of them never exports as a Llama type.
"""

from __future__ import annotations

from typing import Any

from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.hf.base import HFAdapter, Mapping, one, plain_layers, refuse
from bigseq.models.transformer_lm.hf.rope import rope_fields, rope_parameters, with_legacy_rope_keys

# (ours, theirs, which bias switch): q/k/v, the attention output, the MLP
_PROJECTIONS = [("attn.q_proj", "self_attn.q_proj", "qkv"), ("attn.k_proj", "self_attn.k_proj", "qkv"),
                ("attn.v_proj", "self_attn.v_proj", "qkv"), ("attn.out_proj", "self_attn.o_proj", "out"),
                ("ffn.gate_proj", "mlp.gate_proj", "mlp"), ("ffn.up_proj", "mlp.up_proj", "mlp"),
                ("ffn.down_proj", "mlp.down_proj", "mlp")]


def llama_layers(cfg: TransformerLMConfig) -> bool:
    """The layer structure every Llama-derived model type shares (Phi-3's too)."""
    return (cfg.decoder_normalize_before and plain_layers(cfg) and cfg.has_final_norm and not cfg.layernorm_embedding
            and cfg.no_scale_embedding and cfg.position_kind == "rope" and cfg.norm == "rmsnorm"
            and cfg.activation_fn == "swiglu")


def llama_style(cfg: TransformerLMConfig) -> bool:
    """Llama's layers with Llama's RoPE: default or llama3, over the whole head (not longrope, not partial)."""
    return llama_layers(cfg) and cfg.rope_scaling in ("none", "llama3") and cfg.rope_partial_factor == 1.0


def sliding_layers(cfg: TransformerLMConfig) -> list[int]:
    """Indices of the layers with a sliding window."""
    return [i for i in range(cfg.decoder_layers) if cfg.layer_window(i) is not None]


class LlamaAdapter(HFAdapter):
    model_type = "llama"
    config_class = "LlamaConfig"
    qk_norm = "none"
    """What this model type does to q/k before RoPE."""
    rope_types = ("default", "llama3")
    """The config.json rope_type values this model type computes."""
    partial_rotary = False
    """Whether this model type honours partial_rotary_factor."""

    def represents(self, cfg: TransformerLMConfig) -> bool:
        return (llama_style(cfg) and cfg.qk_norm == "none" and not sliding_layers(cfg)
                and cfg.uses_qkv_bias == cfg.uses_out_bias)

    # hooks ----------------------------------------------------------------------
    def biases_from_hf(self, c: dict[str, Any]) -> tuple[bool, bool, bool]:
        """(q/k/v, attention output, MLP) biases of a config.json."""
        attention = bool(c.get("attention_bias", False))
        return attention, attention, bool(c.get("mlp_bias", False))

    def head_dim_from_hf(self, c: dict[str, Any]) -> int:
        return c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]

    def sliding_from_hf(self, c: dict[str, Any]) -> tuple[int | None, list[int] | None]:
        """(sliding_window, sliding_window_layers) of a config.json; Llama has none."""
        return None, None

    def family_hf_config(self, cfg: TransformerLMConfig) -> dict[str, Any]:
        """The config keys of this model type beyond Llama's shared ones."""
        return {"attention_bias": cfg.uses_qkv_bias, "mlp_bias": cfg.uses_mlp_bias}

    # conversion -----------------------------------------------------------------
    def cfg_from_hf(self, c: dict[str, Any]) -> TransformerLMConfig:
        d, heads = c["hidden_size"], c["num_attention_heads"]
        kv_heads = c.get("num_key_value_heads") or heads
        if c.get("hidden_act", "silu") != "silu":
            raise refuse(self.model_type, "hidden_act", c["hidden_act"], "only silu (SwiGLU) converts")
        head_dim = self.head_dim_from_hf(c)
        qkv_bias, out_bias, mlp_bias = self.biases_from_hf(c)
        window, window_layers = self.sliding_from_hf(c)
        # one spelling per model: bias is the output projection's, the others only where they differ
        return TransformerLMConfig(
            decoder_layers=c["num_hidden_layers"], decoder_embed_dim=d, decoder_ffn_embed_dim=c["intermediate_size"],
            decoder_attention_heads=heads, decoder_kv_heads=kv_heads if kv_heads != heads else None,
            decoder_head_dim=None if head_dim * heads == d else head_dim,
            activation_fn="swiglu", positions="rope",
            **rope_fields(c, self.model_type, self.rope_types, self.partial_rotary),
            norm="rmsnorm", norm_eps=c.get("rms_norm_eps", 1e-6), qk_norm=self.qk_norm, bias=out_bias,
            attention_qkv_bias=None if qkv_bias == out_bias else qkv_bias,
            mlp_bias=None if mlp_bias == out_bias else mlp_bias,
            sliding_window=window, sliding_window_layers=window_layers,
            decoder_normalize_before=True, no_scale_embedding=True,
            share_decoder_input_output_embed=bool(c.get("tie_word_embeddings", False)), dropout=0.0,
            max_target_positions=c.get("max_position_embeddings", 2048), vocab_size=c["vocab_size"],
            init_std=c.get("initializer_range", 0.02))

    def hf_config(self, cfg: TransformerLMConfig, **token_ids: Any):
        import transformers
        config_cls = getattr(transformers, self.config_class)
        hf_config = config_cls(
            vocab_size=cfg.vocab_size, hidden_size=cfg.decoder_embed_dim, intermediate_size=cfg.decoder_ffn_embed_dim,
            num_hidden_layers=cfg.decoder_layers, num_attention_heads=cfg.decoder_attention_heads,
            num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_dim, hidden_act="silu",
            max_position_embeddings=cfg.max_target_positions, rms_norm_eps=cfg.norm_eps,
            initializer_range=cfg.init_std, tie_word_embeddings=cfg.share_decoder_input_output_embed,
            rope_parameters=rope_parameters(cfg), attention_dropout=0.0, **self.family_hf_config(cfg), **token_ids)
        return with_legacy_rope_keys(hf_config, cfg)

    def tied_head(self, cfg: TransformerLMConfig) -> tuple[str, str] | None:
        return ("lm_head.weight", "model.embed_tokens.weight") if cfg.share_decoder_input_output_embed else None

    def layer_norms(self, h: str) -> list[Mapping]:
        """Each layer's norms (ours, HF's): Llama's two pre-norms. Gemma adds post-norms, OLMo 2 has only those."""
        return [one("layers.{i}.attn_norm.weight", h + "input_layernorm.weight"),
                one("layers.{i}.ffn_norm.weight", h + "post_attention_layernorm.weight")]

    def key_map(self, cfg: TransformerLMConfig) -> list[Mapping]:
        h = "model.layers.{i}."
        has_bias = {"qkv": cfg.uses_qkv_bias, "out": cfg.uses_out_bias, "mlp": cfg.uses_mlp_bias}
        out = [one("embed.tokens.weight", "model.embed_tokens.weight"), *self.layer_norms(h)]
        for ours, theirs, switch in _PROJECTIONS:
            out.append(one(f"layers.{{i}}.{ours}.weight", f"{h}{theirs}.weight"))
            if has_bias[switch]:
                out.append(one(f"layers.{{i}}.{ours}.bias", f"{h}{theirs}.bias"))
        if cfg.qk_norm != "none":  # per head (Qwen3, Gemma 3) or over the whole projection (OLMo 2): same names
            out += [one("layers.{i}.attn.q_norm.weight", h + "self_attn.q_norm.weight"),
                    one("layers.{i}.attn.k_norm.weight", h + "self_attn.k_norm.weight")]
        out.append(one("final_norm.weight", "model.norm.weight"))
        if not cfg.share_decoder_input_output_embed:
            out.append(one("output_projection.weight", "lm_head.weight"))
        return out
