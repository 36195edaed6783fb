"""Gemma2ForCausalLM: Llama's projections with Gemma's layer around them.

- four norms per layer, "sandwich" placement: ``input_layernorm`` -> attention -> ``post_attention_layernorm``
  -> add, ``pre_feedforward_layernorm`` -> MLP -> ``post_feedforward_layernorm`` -> add (bigseq's attn_norm,
  attn_post_norm, ffn_norm, ffn_post_norm);
- Gemma's RMSNorm: x_norm * (1 + weight) in fp32 (``--norm rmsnorm_unit_offset``, weights start at 0);
- token embeddings times sqrt(hidden_size) rounded to the weight dtype (``--embed-scale-in-weight-dtype``);
- softmax scale ``query_pre_attn_scalar ** -0.5`` (an int in transformers; bigseq's None is head_dim);
- soft-capped attention scores and logits (``attn_logit_softcapping`` 50 and ``final_logit_softcapping`` 30
  when the file has none);
- GeGLU with the tanh gelu (``hidden_activation: gelu_pytorch_tanh``; plain ``gelu`` is bigseq's geglu);
- sliding layers as ``layer_types`` lists them; a file without it alternates, layer 0 sliding. The mask is
  ``kv_idx > q_idx - sliding_window``: itself and sliding_window - 1 keys before, bigseq's convention.
One ``attention_bias`` switch covers q/k/v/o; the MLP has none. Embeddings are tied unless the file says not.
Gemma 3's text model (gemma3.py) is this plus q/k norms and a RoPE per layer type.
"""

from __future__ import annotations

from typing import Any

from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.hf.base import Mapping, one, refuse
from bigseq.models.transformer_lm.hf.llama import LlamaAdapter, sliding_layers
from bigseq.models.transformer_lm.hf.rope import rope_fields, rope_parameters, with_legacy_rope_keys

LAYER_TYPES = ("full_attention", "sliding_attention")
ACTIVATIONS_FROM_HF = {"gelu_pytorch_tanh": "geglu_tanh", "gelu": "geglu"}
ACTIVATIONS_TO_HF = {ours: theirs for theirs, ours in ACTIVATIONS_FROM_HF.items()}


def gemma_style(cfg: TransformerLMConfig) -> bool:
    """The layer structure Gemma 2 and Gemma 3 share (q/k norms and RoPE are each type's own)."""
    scalar = cfg.query_pre_attn_scalar
    return (cfg.norm_placement == "sandwich" and cfg.has_final_norm and not cfg.layernorm_embedding
            and not cfg.no_scale_embedding and cfg.embed_scale_in_weight_dtype and cfg.position_kind == "rope"
            and cfg.norm == "rmsnorm_unit_offset" and cfg.activation_fn in ACTIVATIONS_TO_HF
            and cfg.uses_qkv_bias == cfg.uses_out_bias and not cfg.uses_mlp_bias
            and cfg.decoder_embed_dim % cfg.decoder_attention_heads == 0  # transformers checks it
            and (scalar is None or float(scalar).is_integer()) and cfg.rope_partial_factor == 1.0)


class Gemma2Adapter(LlamaAdapter):
    model_type = "gemma2"
    config_class = "Gemma2Config"
    qk_norm = "none"
    default_head_dim = 256
    default_max_positions = 8192
    default_softcaps = (50.0, 30.0)
    """(attention, final) soft-caps of a file without the keys."""
    sliding_pattern = 2
    """Without layer_types, layer i slides unless (i + 1) is a multiple of this."""

    def represents(self, cfg: TransformerLMConfig) -> bool:
        return (gemma_style(cfg) and cfg.qk_norm == self.qk_norm and cfg.rope_local_theta is None
                and cfg.rope_scaling == "none")

    # hooks ----------------------------------------------------------------------
    def sliding_from_hf(self, c: dict[str, Any]) -> tuple[int | None, list[int] | None]:
        layers = c["num_hidden_layers"]
        pattern = c.get("sliding_window_pattern") or self.sliding_pattern
        types = c.get("layer_types") or ["sliding_attention" if (i + 1) % pattern else "full_attention"
                                         for i in range(layers)]
        if len(types) != layers or not set(types) <= set(LAYER_TYPES):
            raise refuse(self.model_type, "layer_types", types, f"give {layers} of {', '.join(LAYER_TYPES)}")
        sliding = [i for i, t in enumerate(types) if t == "sliding_attention"]
        if not sliding:
            return None, None
        if c.get("sliding_window") is None:
            raise refuse(self.model_type, "sliding_window", None, "sliding layers need a sliding_window")
        return c["sliding_window"], None if len(sliding) == layers else sliding

    def rope_from_hf(self, c: dict[str, Any], sliding: bool) -> dict[str, Any]:
        """The RoPE fields of a config.json (``sliding``: whether any layer slides)."""
        return rope_fields(c, self.model_type)

    def rope_hf_config(self, cfg: TransformerLMConfig) -> dict[str, Any]:
        return {"rope_parameters": rope_parameters(cfg)}

    def with_legacy_keys(self, hf_config, cfg: TransformerLMConfig):
        return with_legacy_rope_keys(hf_config, cfg)

    # conversion -----------------------------------------------------------------
    def cfg_from_hf(self, c: dict[str, Any]) -> TransformerLMConfig:
        if c.get("use_bidirectional_attention"):
            raise refuse(self.model_type, "use_bidirectional_attention", True, "only causal attention converts")
        act = c.get("hidden_activation") or "gelu_pytorch_tanh"
        if act not in ACTIVATIONS_FROM_HF:
            raise refuse(self.model_type, "hidden_activation", act, f"{' and '.join(ACTIVATIONS_FROM_HF)} convert")
        d, heads = c["hidden_size"], c["num_attention_heads"]
        kv_heads = c.get("num_key_value_heads") or heads
        head_dim = c.get("head_dim") or self.default_head_dim
        bias = bool(c.get("attention_bias", False))
        window, window_layers = self.sliding_from_hf(c)
        scalar = c.get("query_pre_attn_scalar", 256)
        attn_cap = c.get("attn_logit_softcapping", self.default_softcaps[0])
        final_cap = c.get("final_logit_softcapping", self.default_softcaps[1])
        return TransformerLMConfig(
            decoder_layers=c["num_hidden_layers"], decoder_embed_dim=d, decoder_ffn_embed_dim=c["intermediate_size"],
            decoder_attention_heads=heads, decoder_kv_heads=kv_heads if kv_heads != heads else None,
            decoder_head_dim=None if head_dim * heads == d else head_dim,
            activation_fn=ACTIVATIONS_FROM_HF[act], positions="rope",
            **self.rope_from_hf(c, window is not None),
            norm="rmsnorm_unit_offset", norm_eps=c.get("rms_norm_eps", 1e-6), qk_norm=self.qk_norm,
            decoder_norm_placement="sandwich", embed_scale_in_weight_dtype=True,
            bias=bias, mlp_bias=False if bias else None,
            query_pre_attn_scalar=None if scalar == head_dim else scalar,
            attn_logit_softcap=attn_cap, final_logit_softcap=final_cap,
            sliding_window=window, sliding_window_layers=window_layers,
            share_decoder_input_output_embed=bool(c.get("tie_word_embeddings", True)), dropout=0.0,
            max_target_positions=c.get("max_position_embeddings", self.default_max_positions),
            vocab_size=c["vocab_size"], init_std=c.get("initializer_range", 0.02))

    def hf_config(self, cfg: TransformerLMConfig, **token_ids: Any):
        import transformers
        config_cls = getattr(transformers, self.config_class)
        sliding = set(sliding_layers(cfg))
        window = {"sliding_window": cfg.sliding_window} if sliding else {}  # else the class default, unused
        hf_config = config_cls(
            vocab_size=cfg.vocab_size, hidden_size=cfg.decoder_embed_dim, intermediate_size=cfg.decoder_ffn_embed_dim,
            num_hidden_layers=cfg.decoder_layers, num_attention_heads=cfg.decoder_attention_heads,
            num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_dim,
            hidden_activation=ACTIVATIONS_TO_HF[cfg.activation_fn], max_position_embeddings=cfg.max_target_positions,
            rms_norm_eps=cfg.norm_eps, initializer_range=cfg.init_std,
            tie_word_embeddings=cfg.share_decoder_input_output_embed, attention_bias=cfg.uses_qkv_bias,
            attention_dropout=0.0, query_pre_attn_scalar=int(cfg.query_pre_attn_scalar or cfg.head_dim),
            attn_logit_softcapping=cfg.attn_logit_softcap, final_logit_softcapping=cfg.final_logit_softcap,
            layer_types=[LAYER_TYPES[i in sliding] for i in range(cfg.decoder_layers)], **window,
            **self.rope_hf_config(cfg), **token_ids)
        return self.with_legacy_keys(hf_config, cfg)

    def layer_norms(self, h: str) -> list[Mapping]:
        return [one("layers.{i}.attn_norm.weight", h + "input_layernorm.weight"),
                one("layers.{i}.attn_post_norm.weight", h + "post_attention_layernorm.weight"),
                one("layers.{i}.ffn_norm.weight", h + "pre_feedforward_layernorm.weight"),
                one("layers.{i}.ffn_post_norm.weight", h + "post_feedforward_layernorm.weight")]
