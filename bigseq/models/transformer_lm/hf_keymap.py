"""HF transformers interop: state-dict key maps and configs for GPT2LMHeadModel and LlamaForCausalLM.

GPT-2 stores its projections as Conv1D, (in, out): transposed relative to
nn.Linear, with q/k/v fused into one ``c_attn``. HF Llama checkpoints keep
q/k in the rotate_half RoPE layout, which is the one bigseq uses: no permutation.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch

from bigseq.errors import BigseqError
from bigseq.models.transformer_lm.config import TransformerLMConfig

Style = Literal["gpt2", "llama"]
# HF buffers that may appear in older checkpoints and carry no weights
_IGNORED_HF_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")
# our activation -> GPT2Config.activation_function (fairseq's gelu_accurate/gelu_fast are GPT-2's gelu_new)
_GPT2_ACT = {"gelu_new": "gelu_new", "gelu_accurate": "gelu_new", "gelu_fast": "gelu_new", "gelu": "gelu",
             "relu": "relu", "silu": "silu", "swish": "silu", "tanh": "tanh", "linear": "linear"}


HF_MODEL_TYPES = ("gpt2", "llama")
"""transformers model types this adapter converts (config.json's model_type)."""


def hf_style(cfg: TransformerLMConfig) -> Style:
    """Which HF model family represents this config exactly; BigseqError if none does."""
    common = (cfg.decoder_normalize_before and cfg.has_final_norm and not cfg.layernorm_embedding
              and cfg.no_scale_embedding)
    if (common and cfg.position_kind == "learned" and cfg.norm == "layernorm" and cfg.bias
            and cfg.kv_heads == cfg.decoder_attention_heads and cfg.activation_fn in _GPT2_ACT):
        return "gpt2"
    if common and cfg.position_kind == "rope" and cfg.norm == "rmsnorm" and cfg.activation_fn == "swiglu":
        return "llama"
    raise BigseqError("this transformer_lm config has no HF equivalent; HF export needs GPT-2 style (pre-norm, "
                      "learned positions, layernorm, biases, gelu) or Llama style (pre-norm, rope, rmsnorm, swiglu), "
                      "with --no-scale-embedding and no --layernorm-embedding")


def _gpt2_layer_pairs(i: int) -> list[tuple[str, str, bool]]:
    """(ours, HF, transposed) for the per-layer GPT-2 weights other than the fused q/k/v."""
    o, h = f"layers.{i}.", f"transformer.h.{i}."
    return [(o + "attn_norm.weight", h + "ln_1.weight", False), (o + "attn_norm.bias", h + "ln_1.bias", False),
            (o + "attn.out_proj.weight", h + "attn.c_proj.weight", True),
            (o + "attn.out_proj.bias", h + "attn.c_proj.bias", False),
            (o + "ffn_norm.weight", h + "ln_2.weight", False), (o + "ffn_norm.bias", h + "ln_2.bias", False),
            (o + "ffn.up_proj.weight", h + "mlp.c_fc.weight", True),
            (o + "ffn.up_proj.bias", h + "mlp.c_fc.bias", False),
            (o + "ffn.down_proj.weight", h + "mlp.c_proj.weight", True),
            (o + "ffn.down_proj.bias", h + "mlp.c_proj.bias", False)]


def _llama_key_pairs(cfg: TransformerLMConfig) -> list[tuple[str, str]]:
    pairs = [("embed.tokens.weight", "model.embed_tokens.weight"), ("final_norm.weight", "model.norm.weight")]
    names = [("attn.q_proj", "self_attn.q_proj"), ("attn.k_proj", "self_attn.k_proj"),
             ("attn.v_proj", "self_attn.v_proj"), ("attn.out_proj", "self_attn.o_proj"),
             ("ffn.gate_proj", "mlp.gate_proj"), ("ffn.up_proj", "mlp.up_proj"), ("ffn.down_proj", "mlp.down_proj")]
    for i in range(cfg.decoder_layers):
        o, h = f"layers.{i}.", f"model.layers.{i}."
        pairs += [(o + "attn_norm.weight", h + "input_layernorm.weight"),
                  (o + "ffn_norm.weight", h + "post_attention_layernorm.weight")]
        for ours, theirs in names:
            pairs.append((f"{o}{ours}.weight", f"{h}{theirs}.weight"))
            if cfg.bias:
                pairs.append((f"{o}{ours}.bias", f"{h}{theirs}.bias"))
    if not cfg.share_decoder_input_output_embed:
        pairs.append(("output_projection.weight", "lm_head.weight"))
    return pairs


def _take(sd: dict[str, torch.Tensor], key: str, where: str) -> torch.Tensor:
    if key not in sd:
        raise BigseqError(f"{where} has no '{key}'; the checkpoint does not match this config "
                          f"(family, layer count or tying)")
    return sd.pop(key)


def to_hf_state_dict(model_or_sd, cfg: TransformerLMConfig, style: Optional[Style] = None) -> dict[str, torch.Tensor]:
    """Our model (or its state dict) -> the state dict of GPT2LMHeadModel / LlamaForCausalLM.

    With tied embeddings ``lm_head.weight`` is the embedding tensor itself, as in HF's own state_dict.
    """
    style = style or hf_style(cfg)
    sd = dict(model_or_sd.state_dict() if isinstance(model_or_sd, torch.nn.Module) else model_or_sd)
    out: dict[str, torch.Tensor] = {}
    if style == "llama":
        for ours, theirs in _llama_key_pairs(cfg):
            out[theirs] = _take(sd, ours, "model state dict")
    else:
        out["transformer.wte.weight"] = _take(sd, "embed.tokens.weight", "model state dict")
        out["transformer.wpe.weight"] = _take(sd, "embed.positions.weight", "model state dict")
        for i in range(cfg.decoder_layers):
            qkv = [_take(sd, f"layers.{i}.attn.{p}_proj.{kind}", "model state dict")
                   for kind in ("weight", "bias") for p in "qkv"]
            out[f"transformer.h.{i}.attn.c_attn.weight"] = torch.cat(qkv[:3], 0).t().contiguous()
            out[f"transformer.h.{i}.attn.c_attn.bias"] = torch.cat(qkv[3:], 0)
            for ours, theirs, transposed in _gpt2_layer_pairs(i):
                t = _take(sd, ours, "model state dict")
                out[theirs] = t.t().contiguous() if transposed else t
        out["transformer.ln_f.weight"] = _take(sd, "final_norm.weight", "model state dict")
        out["transformer.ln_f.bias"] = _take(sd, "final_norm.bias", "model state dict")
        if not cfg.share_decoder_input_output_embed:
            out["lm_head.weight"] = _take(sd, "output_projection.weight", "model state dict")
    if sd:
        raise BigseqError(f"model state dict has keys with no HF {style} equivalent: {sorted(sd)[:5]}")
    if cfg.share_decoder_input_output_embed:
        # HF's own state_dict lists the tied head too (the same tensor); drop it before safetensors.save_file
        out["lm_head.weight"] = out["transformer.wte.weight" if style == "gpt2" else "model.embed_tokens.weight"]
    return out


def from_hf_state_dict(hf_sd: dict[str, torch.Tensor], cfg: TransformerLMConfig,
                       style: Optional[Style] = None) -> dict[str, torch.Tensor]:
    """A GPT2LMHeadModel / LlamaForCausalLM state dict -> ours (load with model.load_state_dict)."""
    style = style or hf_style(cfg)
    sd = {k: v for k, v in hf_sd.items() if not k.endswith(_IGNORED_HF_SUFFIXES)}
    if cfg.share_decoder_input_output_embed:
        sd.pop("lm_head.weight", None)  # HF may or may not list the tied copy
    where = f"HF {style} state dict"
    out: dict[str, torch.Tensor] = {}
    if style == "llama":
        for ours, theirs in _llama_key_pairs(cfg):
            out[ours] = _take(sd, theirs, where)
    else:
        out["embed.tokens.weight"] = _take(sd, "transformer.wte.weight", where)
        out["embed.positions.weight"] = _take(sd, "transformer.wpe.weight", where)
        d = cfg.decoder_embed_dim
        for i in range(cfg.decoder_layers):
            w = _take(sd, f"transformer.h.{i}.attn.c_attn.weight", where).t()
            b = _take(sd, f"transformer.h.{i}.attn.c_attn.bias", where)
            for j, p in enumerate("qkv"):
                out[f"layers.{i}.attn.{p}_proj.weight"] = w[j * d:(j + 1) * d].contiguous()
                out[f"layers.{i}.attn.{p}_proj.bias"] = b[j * d:(j + 1) * d].contiguous()
            for ours, theirs, transposed in _gpt2_layer_pairs(i):
                t = _take(sd, theirs, where)
                out[ours] = t.t().contiguous() if transposed else t
        out["final_norm.weight"] = _take(sd, "transformer.ln_f.weight", where)
        out["final_norm.bias"] = _take(sd, "transformer.ln_f.bias", where)
        if not cfg.share_decoder_input_output_embed:
            out["output_projection.weight"] = _take(sd, "lm_head.weight", where)
    if sd:
        raise BigseqError(f"{where} has keys this config does not use: {sorted(sd)[:5]}; "
                          f"check --decoder-layers and the tying of input/output embeddings")
    return out


def hf_config_from_cfg(cfg: TransformerLMConfig, **token_ids: Any):
    """A transformers GPT2Config / LlamaConfig equal to ``cfg`` (token_ids: bos/eos/pad_token_id)."""
    if cfg.vocab_size is None:
        raise BigseqError("HF export needs the vocabulary size; set cfg.vocab_size (the task fills it)")
    style = hf_style(cfg)
    tied = cfg.share_decoder_input_output_embed
    if style == "gpt2":
        from transformers import GPT2Config
        return GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.max_target_positions, n_embd=cfg.decoder_embed_dim,
                          n_layer=cfg.decoder_layers, n_head=cfg.decoder_attention_heads,
                          n_inner=cfg.decoder_ffn_embed_dim, activation_function=_GPT2_ACT[cfg.activation_fn],
                          resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=0.0,
                          layer_norm_epsilon=cfg.norm_eps, initializer_range=cfg.init_std,
                          tie_word_embeddings=tied, **token_ids)
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.decoder_embed_dim,
                       intermediate_size=cfg.decoder_ffn_embed_dim, num_hidden_layers=cfg.decoder_layers,
                       num_attention_heads=cfg.decoder_attention_heads, num_key_value_heads=cfg.kv_heads,
                       head_dim=cfg.head_dim, hidden_act="silu", max_position_embeddings=cfg.max_target_positions,
                       rms_norm_eps=cfg.norm_eps, initializer_range=cfg.init_std, tie_word_embeddings=tied,
                       rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
                       attention_bias=cfg.bias, mlp_bias=cfg.bias, attention_dropout=0.0, **token_ids)


def cfg_from_hf_config(hf_config) -> TransformerLMConfig:
    """A transformers GPT2Config / LlamaConfig (or its config.json dict) -> TransformerLMConfig."""
    c = hf_config if isinstance(hf_config, dict) else hf_config.to_dict()
    model_type = c.get("model_type")
    if model_type == "gpt2":
        d = c["n_embd"]
        act = c.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu", "relu", "silu", "tanh"):
            raise BigseqError(f"GPT-2 activation '{act}' is not supported; use a checkpoint with gelu_new")
        return TransformerLMConfig(
            decoder_layers=c["n_layer"], decoder_embed_dim=d, decoder_ffn_embed_dim=c.get("n_inner") or 4 * d,
            decoder_attention_heads=c["n_head"], activation_fn="gelu_new" if act == "gelu_pytorch_tanh" else act,
            positions="learned", decoder_learned_pos=True, norm="layernorm", norm_eps=c.get("layer_norm_epsilon", 1e-5),
            bias=True, decoder_normalize_before=True, no_scale_embedding=True,
            share_decoder_input_output_embed=c.get("tie_word_embeddings", True), dropout=c.get("resid_pdrop", 0.1),
            max_target_positions=c["n_positions"], vocab_size=c["vocab_size"],
            init_std=c.get("initializer_range", 0.02))
    if model_type == "llama":
        return _cfg_from_llama(c)
    raise BigseqError(f"HF model_type '{model_type}' is not supported by transformer_lm; "
                      f"use a gpt2 or llama checkpoint")


def _cfg_from_llama(c: dict[str, Any]) -> TransformerLMConfig:
    d, heads = c["hidden_size"], c["num_attention_heads"]
    kv_heads = c.get("num_key_value_heads") or heads
    rope = c.get("rope_parameters") or c.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise BigseqError(f"Llama rope_type '{rope_type}' (RoPE scaling) is not supported; only default RoPE")
    if c.get("head_dim") not in (None, d // heads):
        raise BigseqError(f"Llama head_dim {c['head_dim']} != hidden_size / num_attention_heads; not supported")
    if c.get("hidden_act", "silu") != "silu":
        raise BigseqError(f"Llama hidden_act '{c['hidden_act']}' is not supported; only silu (SwiGLU)")
    if bool(c.get("attention_bias", False)) != bool(c.get("mlp_bias", False)):
        raise BigseqError("Llama checkpoints with attention_bias != mlp_bias are not supported")
    return TransformerLMConfig(
        decoder_layers=c["num_hidden_layers"], decoder_embed_dim=d, decoder_ffn_embed_dim=c["intermediate_size"],
        decoder_attention_heads=heads, decoder_kv_heads=kv_heads if kv_heads != heads else None,
        activation_fn="swiglu", positions="rope",
        rope_theta=float(rope.get("rope_theta", c.get("rope_theta", 10000.0))),
        norm="rmsnorm", norm_eps=c.get("rms_norm_eps", 1e-6), bias=bool(c.get("attention_bias", False)),
        decoder_normalize_before=True, no_scale_embedding=True,
        share_decoder_input_output_embed=bool(c.get("tie_word_embeddings", False)), dropout=0.0,
        max_target_positions=c.get("max_position_embeddings", 2048), vocab_size=c["vocab_size"],
        init_std=c.get("initializer_range", 0.02))
