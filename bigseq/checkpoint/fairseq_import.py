"""`bigseq convert from-fairseq CHECKPOINT.pt OUT_DIR [--data DATA_BIN]`: a fairseq ``transformer`` or
``transformer_lm`` checkpoint -> a consolidated bigseq folder.

The folder holds the weights under bigseq's names in the checkpoint's dtype (fp16 stays fp16),
config.json (the mapped model config, pad/vocabulary sizes, the fairseq dictionaries' token ids),
the dictionaries (``dict.{src}.txt`` and ``dict.{tgt}.txt``, or ``dict.txt`` for an LM) copied from
the data-bin so the folder can be trained from and generated with, and ``fairseq.json``: the
checkpoint's model and task args, which ``to-fairseq`` writes back. Every tensor and dictionary is
checked against the model config before anything is written.
"""

from __future__ import annotations

import argparse
import os
import shutil

import torch

from bigseq.atomic_files import write_json
from bigseq.checkpoint import fairseq_keys as keys
from bigseq.checkpoint.consolidated import Staging, write_info
from bigseq.checkpoint.fairseq_config import PAD_IDX, family_of, lm_config, refuse_unsupported, transformer_config
from bigseq.checkpoint.fairseq_pickle import ModelArgs, load_fairseq_checkpoint, model_args
from bigseq.checkpoint.hf_write import DEFAULT_SHARD_SIZE, ShardWriter, parse_dtype, parse_size
from bigseq.data.dictionary import Dictionary
from bigseq.errors import BigseqError

FAIRSEQ_RECORD = "fairseq.json"
TOKEN_IDS = {"bos_token_id": 0, "pad_token_id": PAD_IDX, "eos_token_id": 2, "unk_token_id": 3}


def from_fairseq(path: str, out_dir: str, *, data: str | None = None, dtype: str = "auto",
                 max_shard_size: str = DEFAULT_SHARD_SIZE) -> str:
    cast, shard_bytes = parse_dtype(dtype), parse_size(max_shard_size)
    state = load_fairseq_checkpoint(path)
    args = model_args(state, path)
    family = family_of(args, path)
    refuse_unsupported(args, path, family)
    convert = _convert_transformer if family == "transformer" else _convert_lm
    cfg, tensors, extra = convert(state["model"], args, path)
    _check_against_model(family, cfg, extra, tensors, path)
    task = _section(state, "task")
    dicts = _dictionaries(family, task, data, path, extra)
    staging = Staging(out_dir)
    with staging as tmp:
        writer = ShardWriter(tmp, shard_bytes, cast)
        seen: set[int] = set()
        for name, tensor in tensors.items():
            if tensor.untyped_storage().data_ptr() in seen:  # a tied copy: safetensors stores no shared memory
                tensor = tensor.clone()
            seen.add(tensor.untyped_storage().data_ptr())
            writer.add((name,), (tensor,))
        saved = writer.close()
        for source, name in dicts:
            shutil.copyfile(source, os.path.join(tmp, name))
        write_json(os.path.join(tmp, FAIRSEQ_RECORD), {"model": _jsonable(args.source), "task": _jsonable(task)})
        write_info(tmp, family, cfg, dtype=saved, pad_idx=PAD_IDX, token_ids=TOKEN_IDS, source=os.path.abspath(path),
                   num_updates=_num_updates(state), **extra)
    return out_dir


def _convert_transformer(weights: dict, args: ModelArgs, path: str):
    cfg = transformer_config(args, encoder_final_norm=keys.has_final_norm_version(weights, "encoder"),
                             decoder_final_norm=keys.has_final_norm_version(weights, "decoder"), path=path)
    weights = keys.upgrade_legacy(weights, tied_output=cfg.ties_output)
    if cfg.ties_output:  # fairseq keeps the tied output matrix as its own key; bigseq has none
        _drop_tied(weights, "decoder.output_projection.weight", "decoder.embed_tokens.weight", path)
    vocab = {"src_vocab_size": _rows(weights, "encoder.embed_tokens.weight", path),
             "tgt_vocab_size": _rows(weights, "decoder.embed_tokens.weight", path),
             "joined_dictionary": cfg.share_all_embeddings}
    if cfg.share_all_embeddings:  # one module in bigseq's model: stored once, under the encoder's name
        _drop_tied(weights, "decoder.embed_tokens.weight", "encoder.embed_tokens.weight", path)
    tensors = {keys.transformer_to_bigseq(k): v for k, v in weights.items() if not keys.is_dropped(k)}
    return cfg, tensors, vocab


def _convert_lm(weights: dict, args: ModelArgs, path: str):
    tied = bool(args.get("share_decoder_input_output_embed", False))
    weights = keys.upgrade_legacy(weights, tied_output=tied)
    if tied:
        _drop_tied(weights, "decoder.output_projection.weight", "decoder.embed_tokens.weight", path)
    positions = weights.get("decoder.embed_positions.weight")
    vocab_size = _rows(weights, "decoder.embed_tokens.weight", path)
    cfg = lm_config(args, vocab_size=vocab_size, final_norm=keys.has_final_norm_version(weights, "decoder"),
                    max_positions=None if positions is None else positions.shape[0] - (PAD_IDX + 1))
    tensors = {keys.lm_to_bigseq(k): v for k, v in weights.items() if not keys.is_dropped(k)}
    return cfg, tensors, {"vocab_size": vocab_size}


def _rows(weights: dict, key: str, path: str) -> int:
    if key not in weights:
        raise BigseqError(f"{path}: no '{key}' in the model's state dict; not a fairseq transformer checkpoint")
    return weights[key].shape[0]


def _check_tied(weights: dict, key: str, other: str, path: str) -> None:
    if key in weights and other in weights and not torch.equal(weights[key], weights[other]):
        raise BigseqError(f"{path}: the config ties '{key}' to '{other}' but they differ; the checkpoint does "
                          f"not match its own config")


def _drop_tied(weights: dict, key: str, other: str, path: str) -> None:
    _check_tied(weights, key, other, path)
    weights.pop(key, None)


def _check_against_model(family: str, cfg, extra: dict, tensors: dict, path: str) -> None:
    """Every name and shape the bigseq model has, and no other (a model on the meta device: no memory)."""
    from bigseq.checkpoint.consolidated import new_model, unique_state_dict
    with torch.device("meta"):
        model = new_model(family, cfg, {"pad_idx": PAD_IDX, **extra})
    expected = {name: tuple(t.shape) for name, t in unique_state_dict(model).items()}
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise BigseqError(f"{path}: the weights do not match the {family} config in the checkpoint "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]}); cannot convert")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise BigseqError(f"{path}: '{name}' has shape {tuple(tensors[name].shape)}, the config says {shape}; "
                              f"cannot convert")


def _section(state: dict, name: str):
    cfg = state.get("cfg")
    section = cfg.get(name) if isinstance(cfg, dict) else None
    if section is None and state.get("args") is not None:
        section = state["args"]  # legacy: one Namespace holds the task's fields too
    return vars(section) if isinstance(section, argparse.Namespace) else (section or {})


def _dictionaries(family: str, task: dict, data: str | None, path: str, extra: dict) -> list[tuple[str, str]]:
    """[(source file, name in the folder)]: the dictionaries of the data-bin, each checked against the weights."""
    if family == "transformer":
        src, tgt = task.get("source_lang"), task.get("target_lang")
        if not src or not tgt:
            raise BigseqError(f"{path}: the checkpoint does not record --source-lang/--target-lang; cannot tell "
                              f"which dict.*.txt is the source's")
        wanted = [(f"dict.{src}.txt", extra["src_vocab_size"]), (f"dict.{tgt}.txt", extra["tgt_vocab_size"])]
    else:
        wanted = [("dict.txt", extra["vocab_size"])]
    candidates = [data] if data else [*(str(task.get("data") or "").split(":")[:1]), os.path.dirname(path) or "."]
    folder = next((d for d in candidates if d and all(os.path.isfile(os.path.join(d, n)) for n, _ in wanted)), None)
    if folder is None:
        where = " or ".join(c for c in candidates if c)
        raise BigseqError(f"{path}: no {' and '.join(n for n, _ in wanted)} in {where}; "
                          f"pass --data DATA_BIN (the fairseq-preprocess folder it was trained on)")
    for name, rows in wanted:
        size = len(Dictionary.load(os.path.join(folder, name)))
        if size != rows:
            raise BigseqError(f"{os.path.join(folder, name)} has {size} tokens, the checkpoint's embedding {rows}; "
                              f"pass --data with the data-bin the model was trained on")
    return [(os.path.join(folder, n), n) for n, _ in wanted]


def _num_updates(state: dict) -> int:
    history = state.get("optimizer_history") or [{}]
    return int(history[-1].get("num_updates", 0) or 0)


def _jsonable(obj):
    """Namespaces and dicts of config values as JSON (tuples as lists; anything else as its repr)."""
    if isinstance(obj, argparse.Namespace):
        obj = vars(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    return repr(obj)
