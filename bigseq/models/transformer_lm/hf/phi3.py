"""Phi3ForCausalLM (Phi-3, Phi-3.5, Phi-4, Phi-4-mini): Llama without biases, with q/k/v fused into
``self_attn.qkv_proj`` (rows q = heads * head_dim, then k, then v = kv_heads * head_dim each) and gate/up
fused into ``mlp.gate_up_proj`` (gate rows first), plus two RoPE options Llama lacks: longrope
(short/long factors, chosen per forward from max(position) + 1 vs original_max_position_embeddings)
and partial_rotary_factor (only the first int(head_dim * factor) dims of a head rotate).

transformers' Phi3 passes ``sliding_window`` to every layer's attention and builds one sliding mask
for the whole model (no ``layer_types``), so import maps it onto --sliding-window on every layer.
Its head size is hidden_size / num_attention_heads (Phi3Config has no ``head_dim`` and validates the
longrope factor lengths against that), so a config with a head size of its own is not phi3. The
top-level ``original_max_position_embeddings`` (default 4096) overrides the one in ``rope_parameters``,
as transformers' ``standardize_rope_params`` does; legacy rope types "su" and "yarn" are longrope, as
Phi3Config maps them. Phi3ForCausalLM's generation drops its KV cache at the step that first reaches
past original_max_position_embeddings and recomputes every position with the long factors; bigseq's
SequenceGenerator does the same (the model's ``kv_recompute_position``).

Export choice: a Phi-3 with default RoPE over the whole head computes exactly what Llama (no window)
or Mistral (window on every layer) computes; only the tensor layout differs. Those configs export
as llama/mistral, the plainer and more widely read types, because ``ADAPTERS`` lists phi3 after
them; a config exports as phi3 only when it needs what only Phi-3 computes: longrope or partial
rotary. ``hf_config_from_cfg(cfg, model_type="phi3")`` still writes any config phi3 represents.
Phi3Config's token id defaults (bos 1, eos/pad 32000) belong to Phi-3's tokenizer, so export
leaves unset ids None instead of writing them for another vocabulary.
"""

from __future__ import annotations

from typing import Any

from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.hf.base import Mapping, fuse_rows, group, one, refuse
from bigseq.models.transformer_lm.hf.llama import LlamaAdapter, llama_layers, sliding_layers

LEGACY_LONGROPE = ("su", "yarn")  # Phi3Config.convert_rope_params_to_dict maps these to longrope
TOKEN_ID_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id")
# Phi3Config's defaults where they differ from what LlamaAdapter.cfg_from_hf assumes for a missing key
_DEFAULTS = {"rms_norm_eps": 1e-5, "max_position_embeddings": 4096, "original_max_position_embeddings": 4096}


class Phi3Adapter(LlamaAdapter):
    model_type = "phi3"
    config_class = "Phi3Config"
    rope_types = ("default", "longrope")
    partial_rotary = True

    def represents(self, cfg: TransformerLMConfig) -> bool:
        return (llama_layers(cfg) and cfg.qk_norm == "none" and cfg.rope_scaling in ("none", "longrope")
                and cfg.head_dim * cfg.decoder_attention_heads == cfg.decoder_embed_dim
                and len(sliding_layers(cfg)) in (0, cfg.decoder_layers)
                and not (cfg.uses_qkv_bias or cfg.uses_out_bias or cfg.uses_mlp_bias))

    def cfg_from_hf(self, c: dict[str, Any]) -> TransformerLMConfig:
        c = {**_DEFAULTS, **{k: v for k, v in c.items() if v is not None or k not in _DEFAULTS}}
        for key in ("rope_scaling", "rope_parameters"):
            rope = c.get(key)
            if isinstance(rope, dict) and rope.get("rope_type", rope.get("type")) in LEGACY_LONGROPE:
                c[key] = {**{k: v for k, v in rope.items() if k != "type"}, "rope_type": "longrope"}
        return super().cfg_from_hf(c)

    def biases_from_hf(self, c: dict[str, Any]) -> tuple[bool, bool, bool]:
        return False, False, False  # qkv_proj, o_proj, gate_up_proj and down_proj are built with bias=False

    def head_dim_from_hf(self, c: dict[str, Any]) -> int:
        head_dim = c["hidden_size"] // c["num_attention_heads"]
        if c.get("head_dim") not in (None, head_dim):
            raise refuse(self.model_type, "head_dim", c["head_dim"], f"phi3 heads are hidden_size / "
                         f"num_attention_heads = {head_dim} wide")
        return head_dim

    def sliding_from_hf(self, c: dict[str, Any]) -> tuple[int | None, list[int] | None]:
        return c.get("sliding_window"), None

    def family_hf_config(self, cfg: TransformerLMConfig) -> dict[str, Any]:
        return {"sliding_window": cfg.sliding_window, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
                "original_max_position_embeddings": cfg.rope_original_max_positions}

    def hf_config(self, cfg: TransformerLMConfig, **token_ids: Any):
        return super().hf_config(cfg, **{**dict.fromkeys(TOKEN_ID_FIELDS), **token_ids})

    def key_map(self, cfg: TransformerLMConfig) -> list[Mapping]:
        h = "model.layers.{i}."
        q, kv, ffn = cfg.decoder_attention_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim, cfg.decoder_ffn_embed_dim
        out = [one("embed.tokens.weight", "model.embed_tokens.weight"),
               one("layers.{i}.attn_norm.weight", h + "input_layernorm.weight"),
               group(tuple(f"layers.{{i}}.attn.{p}_proj.weight" for p in "qkv"), (h + "self_attn.qkv_proj.weight",),
                     fuse_rows(lambda: (q, kv, kv))),
               one("layers.{i}.attn.out_proj.weight", h + "self_attn.o_proj.weight"),
               one("layers.{i}.ffn_norm.weight", h + "post_attention_layernorm.weight"),
               group(("layers.{i}.ffn.gate_proj.weight", "layers.{i}.ffn.up_proj.weight"),
                     (h + "mlp.gate_up_proj.weight",), fuse_rows(lambda: (ffn, ffn))),
               one("layers.{i}.ffn.down_proj.weight", h + "mlp.down_proj.weight"),
               one("final_norm.weight", "model.norm.weight")]
        if not cfg.share_decoder_input_output_embed:
            out.append(one("output_projection.weight", "lm_head.weight"))
        return out
