"""`bigseq convert to-fairseq CKPT_OR_FOLDER OUT.pt`: a checkpoint fairseq loads and generates from.

The file is laid out as fairseq 0.12's trainer writes one for a legacy ``--arch``: ``cfg`` is a dict
whose ``model`` is an argparse.Namespace (the arch and every flag that shapes the model; a post-norm LM
gets fairseq's dataclass form, a dict with ``_name``, as legacy LM archs force pre-norm), ``args``
is None, and ``model`` is the state dict fairseq's strict ``load_state_dict`` expects: bigseq's
tensors renamed, every tied embedding under each of fairseq's names (one tensor, as fairseq saves
it), the ``{encoder,decoder}.version`` buffers ([3]: a stack with its final LayerNorm) and the
sinusoidal ``embed_positions._float_tensor`` buffers. A folder made by ``from-fairseq`` gives back
the fairseq args it recorded (attention dropout and other flags bigseq drops), with the converted
model's fields on top. A bigseq model fairseq cannot compute (RoPE, RMSNorm, gated FFNs, ...) is
refused in one line.
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from bigseq.checkpoint import fairseq_keys as keys
from bigseq.checkpoint.convert import open_weights
from bigseq.checkpoint.fairseq_config import PAD_IDX
from bigseq.checkpoint.fairseq_import import FAIRSEQ_RECORD
from bigseq.checkpoint.hf_write import parse_dtype
from bigseq.errors import BigseqError

_FAIRSEQ_ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu_accurate", "gelu_accurate": "gelu_accurate",
                        "gelu_fast": "gelu_accurate", "silu": "swish", "swish": "swish", "tanh": "tanh",
                        "linear": "linear"}


def to_fairseq(path: str, out_file: str, *, data: str | None = None, dtype: str = "auto") -> str:
    cast = parse_dtype(dtype)
    if os.path.exists(out_file):
        raise BigseqError(f"{out_file} exists; choose a new output file")
    with open_weights(path, data) as w:
        record = _record(path)
        if w.family.name == "transformer":
            model_ns, state = _transformer_args(w.cfg, record), _transformer_state(w.cfg, w.tensors)
        elif w.family.name == "transformer_lm":
            model_ns, state = _lm_args(w.cfg, record, path), _lm_state(w.cfg, w.tensors)
        else:
            raise BigseqError(f"to-fairseq: the '{w.family.name}' family has no fairseq equivalent")
        if cast is not None:
            state = _cast(state, cast)
        task = record.get("task") or _task(w, model_ns)
        checkpoint = {
            "args": None,
            "cfg": {"_name": None, "common": {"fp16": _dtype_of(state) == torch.float16, "seed": 1},
                    "task": task, "model": model_ns, "criterion": {"_name": "cross_entropy"}},
            "model": state, "criterion": None,
            "optimizer_history": [{"criterion_name": "CrossEntropyCriterion", "optimizer_name": "NoOptimizer",
                                   "lr_scheduler_state": {}, "num_updates": int(w.info.get("num_updates") or 0)}],
            "task_state": {},
            "extra_state": {"metrics": {}, "previous_training_time": 0.0, "val_loss": None,
                            "train_iterator": {"version": 2, "epoch": 1, "iterations_in_epoch": 0, "shuffle": False}},
        }
    os.makedirs(os.path.dirname(os.path.abspath(out_file)), exist_ok=True)
    tmp = out_file + ".partial"
    torch.save(checkpoint, tmp)
    os.replace(tmp, out_file)  # a killed export leaves no file that looks complete
    return out_file


def _record(path: str) -> dict:
    """What from-fairseq recorded of the source checkpoint (empty for a model bigseq trained)."""
    file = os.path.join(path, FAIRSEQ_RECORD)
    if not os.path.isfile(file):
        return {}
    with open(file) as f:
        return json.load(f)


def _dtype_of(state: dict) -> torch.dtype:
    return next((v.dtype for v in state.values() if v.is_floating_point() and v.numel() > 1), torch.float32)


def _cast(state: dict, dtype: torch.dtype) -> dict:
    """Floating tensors to dtype; names that shared one tensor share its cast (fairseq saves a tied
    embedding once)."""
    done: dict[int, torch.Tensor] = {}
    out = {}
    for name, t in state.items():
        if id(t) not in done:
            done[id(t)] = t.to(dtype) if t.is_floating_point() else t
        out[name] = done[id(t)]
    return out


def _buffers(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(version, _float_tensor): what fairseq registers, in the model's dtype as model.half() leaves them."""
    return torch.tensor([3.0], dtype=dtype), torch.zeros(1, dtype=dtype)


def _transformer_state(cfg, tensors) -> dict[str, torch.Tensor]:
    ours = {name: tensors.get(name) for name in tensors.names()}
    state = {keys.transformer_to_fairseq(k): v for k, v in ours.items()}
    if cfg.share_all_embeddings:  # a consolidated folder stores the shared module once, under the encoder's name
        state["decoder.embed_tokens.weight"] = state["encoder.embed_tokens.weight"]
    embed = state["decoder.embed_tokens.weight"]
    if cfg.ties_output:
        state["decoder.output_projection.weight"] = embed
    version, float_tensor = _buffers(embed.dtype)
    for side in ("encoder", "decoder"):
        if cfg.position_kind(side) == "sinusoidal":
            state[f"{side}.embed_positions._float_tensor"] = float_tensor.clone()
        state[f"{side}.version"] = version.clone()
    return state


def _lm_state(cfg, tensors) -> dict[str, torch.Tensor]:
    state = {keys.lm_to_fairseq(name): tensors.get(name) for name in tensors.names()}
    embed = state["decoder.embed_tokens.weight"]
    if cfg.share_decoder_input_output_embed:
        state["decoder.output_projection.weight"] = embed
    version, float_tensor = _buffers(embed.dtype)
    if cfg.position_kind == "sinusoidal":
        state["decoder.embed_positions._float_tensor"] = float_tensor
    state["decoder.version"] = version
    return state


def _namespace(record: dict, fields: dict, attention_dropout: float) -> argparse.Namespace:
    """The recorded fairseq args with the model's fields on top; attention dropout, which bigseq drops,
    keeps fairseq's recorded value."""
    recorded = record.get("model") or {}
    return argparse.Namespace(**{"attention_dropout": attention_dropout, **recorded, **fields})


def _transformer_args(cfg, record: dict) -> argparse.Namespace:
    enc, dec = cfg.encoder, cfg.decoder
    fields = {"arch": (record.get("model") or {}).get("arch") or "transformer"}
    for side, section, dim, ffn in (("encoder", enc, enc.embed_dim, enc.ffn_embed_dim),
                                    ("decoder", dec, cfg.decoder_dim, cfg.decoder_ffn_dim)):
        fields.update({f"{side}_embed_dim": dim, f"{side}_ffn_embed_dim": ffn, f"{side}_layers": section.layers,
                       f"{side}_attention_heads": section.attention_heads,
                       f"{side}_normalize_before": section.normalize_before,
                       f"{side}_learned_pos": section.learned_pos})
    fields.update(decoder_output_dim=cfg.decoder_dim, decoder_input_dim=cfg.decoder_dim,
                  share_all_embeddings=cfg.share_all_embeddings,
                  share_decoder_input_output_embed=cfg.share_decoder_input_output_embed,
                  activation_fn=_FAIRSEQ_ACTIVATIONS[cfg.activation_fn], no_scale_embedding=cfg.no_scale_embedding,
                  layernorm_embedding=cfg.layernorm_embedding,
                  no_token_positional_embeddings=cfg.no_token_positional_embeddings,
                  max_source_positions=cfg.max_source_positions, max_target_positions=cfg.max_target_positions,
                  dropout=cfg.dropout, activation_dropout=cfg.activation_dropout)
    return _namespace(record, fields, cfg.attention_dropout)


def _lm_args(cfg, record: dict, path: str) -> argparse.Namespace | dict:
    """A Namespace with an --arch (pre-norm: every legacy transformer_lm arch forces it), or, for a post-norm
    model or a source saved that way, fairseq's dataclass config (a dict with _name), which keeps the flag."""
    _refuse_lm(cfg, path)
    recorded = record.get("model") or {}
    as_dict = "_name" in recorded or not cfg.decoder_normalize_before
    fields = {"decoder_layers": cfg.decoder_layers, "decoder_embed_dim": cfg.decoder_embed_dim,
              "decoder_ffn_embed_dim": cfg.decoder_ffn_embed_dim,
              "decoder_attention_heads": cfg.decoder_attention_heads,
              "decoder_input_dim": cfg.decoder_embed_dim, "decoder_output_dim": cfg.decoder_embed_dim,
              "share_decoder_input_output_embed": cfg.share_decoder_input_output_embed,
              "activation_fn": _FAIRSEQ_ACTIVATIONS[cfg.activation_fn],
              "decoder_learned_pos": cfg.position_kind == "learned",
              "no_token_positional_embeddings": cfg.position_kind == "none",
              "decoder_normalize_before": cfg.decoder_normalize_before,
              "no_decoder_final_norm": not cfg.has_final_norm, "layernorm_embedding": cfg.layernorm_embedding,
              "no_scale_embedding": cfg.no_scale_embedding, "max_target_positions": cfg.max_target_positions,
              "dropout": cfg.dropout, "activation_dropout": cfg.activation_dropout}
    if as_dict:
        return {"_name": "transformer_lm", "attention_dropout": cfg.attention_dropout, **recorded, **fields}
    return _namespace(record, {"arch": recorded.get("arch") or "transformer_lm", **fields}, cfg.attention_dropout)


def _refuse_lm(cfg, path: str) -> None:
    """What fairseq's TransformerDecoder cannot compute, one line each."""
    checks = [
        (cfg.position_kind in ("learned", "sinusoidal") and cfg.position_offset != PAD_IDX + 1,
         f"positions start at {cfg.position_offset}, fairseq's at {PAD_IDX + 1}"),
        (cfg.position_kind == "rope", "RoPE positions"), (cfg.norm != "layernorm", f"--norm {cfg.norm}"),
        (cfg.norm_eps != 1e-5, f"--norm-eps {cfg.norm_eps}"), (not cfg.bias, "no biases"),
        (cfg.kv_heads != cfg.decoder_attention_heads, "grouped-query attention"),
        (cfg.decoder_head_dim not in (None, cfg.decoder_embed_dim // cfg.decoder_attention_heads), "a head size"),
        (cfg.activation_fn not in _FAIRSEQ_ACTIVATIONS, f"--activation-fn {cfg.activation_fn}"),
        (cfg.norm_placement not in ("pre", "post"), f"--decoder-norm-placement {cfg.norm_placement}"),
        (cfg.qk_norm != "none", "q/k norms"), (cfg.sliding_window is not None, "a sliding window"),
        (cfg.attn_logit_softcap is not None or cfg.final_logit_softcap is not None, "soft-capping"),
        (cfg.query_pre_attn_scalar is not None, "an attention scale"),
        (cfg.embed_scale_in_weight_dtype, "a rounded embedding scale"),
        (cfg.uses_qkv_bias != cfg.bias or cfg.uses_out_bias != cfg.bias or cfg.uses_mlp_bias != cfg.bias,
         "partial biases"),
    ]
    for bad, what in checks:
        if bad:
            raise BigseqError(f"{path}: fairseq's transformer_lm has no {what}; this model cannot be exported "
                              f"to fairseq (to-hf may take it)")


def _task(w, model_ns: argparse.Namespace) -> dict:
    """A task section for a model bigseq trained (from-fairseq folders carry the source's)."""
    train_task = (w.info.get("train_config") or {}).get("task") or {}
    if w.family.name == "transformer":
        return {"_name": "translation", "data": train_task.get("data") or ".",
                "source_lang": train_task.get("source_lang"), "target_lang": train_task.get("target_lang"),
                "left_pad_source": True, "left_pad_target": False,
                "max_source_positions": model_ns.max_source_positions,
                "max_target_positions": model_ns.max_target_positions}
    return {"_name": "language_modeling", "data": train_task.get("data") or ".",
            "tokens_per_sample": model_ns.max_target_positions, "max_target_positions": model_ns.max_target_positions}
