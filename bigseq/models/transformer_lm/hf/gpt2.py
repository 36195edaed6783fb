"""GPT2LMHeadModel: learned positions, LayerNorm with biases, GELU; q/k/v fused into ``c_attn`` and every
projection stored as Conv1D, (in, out): transposed relative to nn.Linear."""

from __future__ import annotations

from typing import Any

from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.hf.base import (
    TRANSPOSE,
    HFAdapter,
    Mapping,
    fuse_rows,
    group,
    one,
    plain_layers,
    refuse,
)

# our activation -> GPT2Config.activation_function (fairseq's gelu_accurate/gelu_fast are GPT-2's gelu_new)
_ACT = {"gelu_new": "gelu_new", "gelu_accurate": "gelu_new", "gelu_fast": "gelu_new", "gelu": "gelu",
        "relu": "relu", "silu": "silu", "swish": "silu", "tanh": "tanh", "linear": "linear"}
_HF_ACT = ("gelu_new", "gelu_pytorch_tanh", "gelu", "relu", "silu", "tanh")


class GPT2Adapter(HFAdapter):
    model_type = "gpt2"
    ignored_suffixes = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers of older checkpoints

    def represents(self, cfg: TransformerLMConfig) -> bool:
        return (cfg.decoder_normalize_before and cfg.has_final_norm and not cfg.layernorm_embedding
                and cfg.no_scale_embedding and cfg.position_kind == "learned" and not cfg.position_offset
                and cfg.norm == "layernorm"
                and cfg.bias and cfg.kv_heads == cfg.decoder_attention_heads and cfg.activation_fn in _ACT
                and plain_layers(cfg))

    def cfg_from_hf(self, c: dict[str, Any]) -> TransformerLMConfig:
        d = c["n_embd"]
        act = c.get("activation_function", "gelu_new")
        if act not in _HF_ACT:
            raise refuse("gpt2", "activation_function", act, "use a checkpoint with gelu_new")
        return TransformerLMConfig(
            decoder_layers=c["n_layer"], decoder_embed_dim=d, decoder_ffn_embed_dim=c.get("n_inner") or 4 * d,
            decoder_attention_heads=c["n_head"], activation_fn="gelu_new" if act == "gelu_pytorch_tanh" else act,
            positions="learned", decoder_learned_pos=True, norm="layernorm", norm_eps=c.get("layer_norm_epsilon", 1e-5),
            bias=True, decoder_normalize_before=True, no_scale_embedding=True,
            share_decoder_input_output_embed=c.get("tie_word_embeddings", True), dropout=c.get("resid_pdrop", 0.1),
            max_target_positions=c["n_positions"], vocab_size=c["vocab_size"],
            init_std=c.get("initializer_range", 0.02))

    def hf_config(self, cfg: TransformerLMConfig, **token_ids: Any):
        from transformers import GPT2Config
        return GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.max_target_positions, n_embd=cfg.decoder_embed_dim,
                          n_layer=cfg.decoder_layers, n_head=cfg.decoder_attention_heads,
                          n_inner=cfg.decoder_ffn_embed_dim, activation_function=_ACT[cfg.activation_fn],
                          resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=0.0,
                          layer_norm_epsilon=cfg.norm_eps, initializer_range=cfg.init_std,
                          tie_word_embeddings=cfg.share_decoder_input_output_embed, **token_ids)

    def tied_head(self, cfg: TransformerLMConfig) -> tuple[str, str] | None:
        return ("lm_head.weight", "transformer.wte.weight") if cfg.share_decoder_input_output_embed else None

    def key_map(self, cfg: TransformerLMConfig) -> list[Mapping]:
        d = cfg.decoder_embed_dim
        qkv = [f"layers.{{i}}.attn.{p}_proj" for p in "qkv"]
        h = "transformer.h.{i}."
        out = [one("embed.tokens.weight", "transformer.wte.weight"),
               one("embed.positions.weight", "transformer.wpe.weight"),
               group(tuple(f"{n}.weight" for n in qkv), (h + "attn.c_attn.weight",),
                     fuse_rows(lambda: (d, d, d), transposed=True)),
               group(tuple(f"{n}.bias" for n in qkv), (h + "attn.c_attn.bias",), fuse_rows(lambda: (d, d, d)))]
        for ours, theirs, transposed in [("attn_norm", "ln_1", False), ("attn.out_proj", "attn.c_proj", True),
                                         ("ffn_norm", "ln_2", False), ("ffn.up_proj", "mlp.c_fc", True),
                                         ("ffn.down_proj", "mlp.c_proj", True)]:
            out.append(one(f"layers.{{i}}.{ours}.weight", f"{h}{theirs}.weight", TRANSPOSE if transposed else None))
            out.append(one(f"layers.{{i}}.{ours}.bias", f"{h}{theirs}.bias"))
        out += [one("final_norm.weight", "transformer.ln_f.weight"), one("final_norm.bias", "transformer.ln_f.bias")]
        if not cfg.share_decoder_input_output_embed:
            out.append(one("output_projection.weight", "lm_head.weight"))
        return out
