"""`bigseq convert to-safetensors | to-hf | from-hf`, streamed group by group.

A family's HF adapter lists its key map as groups (our names, HF names, transform): each group's
tensors are read (hf_read.TensorReader over a folder, or a trained model's state dict), transformed
and handed to a ShardWriter, which saves a shard as soon as it is full; so converting a folder
holds about one output shard, never the model. Only a training checkpoint is loaded whole (DeepSpeed
consolidates it in memory). Every conversion writes into a staging folder renamed when complete.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from bigseq.atomic_files import write_json
from bigseq.checkpoint import hf_files
from bigseq.checkpoint.consolidated import (
    SIZES,
    Staging,
    build_consolidated_model,
    is_consolidated,
    read_info,
    unique_state_dict,
    write_info,
)
from bigseq.checkpoint.hf_read import TensorReader
from bigseq.checkpoint.hf_write import DEFAULT_SHARD_SIZE, ShardWriter, dtype_name, parse_dtype, parse_size
from bigseq.errors import BigseqError
from bigseq.models.family import ModelFamily, get_family, hf_family

__all__ = ["to_safetensors", "to_hf", "from_hf", "build_consolidated_model"]  # the last re-exported from consolidated


class _StateDict:
    """A state dict read like a TensorReader."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = state

    def names(self) -> list[str]:
        return list(self.state)

    def get(self, name: str) -> torch.Tensor:
        return self.state[name]

    def release(self) -> None:
        pass


@dataclass
class _Weights:
    """Our model's weights, by name, and what travels with them."""

    family: ModelFamily
    cfg: Any
    tensors: TensorReader | _StateDict
    token_ids: dict[str, Any]
    """bos/eos/pad_token_id for the exported config.json."""
    artifacts_dir: str | None
    """Where the tokenizer, chat template and generation config files are."""
    info: dict[str, Any]
    """What a consolidated folder's config.json records besides the model (pad_idx, num_updates, ...)."""
    hf_extra: dict[str, Any]
    """What the adapter's hf_config needs besides the model config and token ids (an encoder-decoder's
    src/tgt_vocab_size and languages; nothing for a decoder-only model, whose config has its vocabulary)."""


@contextlib.contextmanager
def open_weights(path: str, data: str | None) -> Iterator[_Weights]:
    """A consolidated folder (read tensor by tensor) or a training checkpoint (loaded and consolidated)."""
    if os.path.isdir(path) and is_consolidated(path):
        info, cfg = read_info(path)
        token_ids = info.get("token_ids") or {"pad_token_id": info.get("pad_idx")}
        rest = {k: v for k, v in info.items() if k not in ("bigseq_format", "model_name", "model", "dtype")}
        extra = {k: info[k] for k in SIZES if k in info}
        if info.get("langs"):
            extra["langs"] = info["langs"]
        with TensorReader(path) as reader:
            yield _Weights(get_family(info["model_name"]), cfg, reader, token_ids, data or path, rest, extra)
        return
    from bigseq.checkpoint.inference import load_for_inference
    from bigseq.config.train_config import train_config_to_dict
    from bigseq.data.tokenizer import Tokenizer
    cfg, task, model, meta = load_for_inference(path, data=data)
    token_ids = {"pad_token_id": task.pad_idx, "eos_token_id": task.eos_idx}
    if cfg.task.data and os.path.isfile(os.path.join(cfg.task.data, "tokenizer.json")):
        bos = Tokenizer.load(cfg.task.data).bos_idx
        if bos is not None:
            token_ids["bos_token_id"] = bos
    artifacts_dir = cfg.task.data
    source = None if data else _pretrained_source(cfg.checkpoint.finetune_from_model)
    if source is not None:  # a run started from a pretrained folder exports that folder's tokenizer and ids
        artifacts_dir, token_ids = source
    extra = {k: getattr(task, k) for k in SIZES if hasattr(task, k)}  # an encoder-decoder's task
    if hasattr(task, "source_lang"):
        extra["langs"] = [task.source_lang, task.target_lang]
    info = {"pad_idx": task.pad_idx, "vocab_size": meta["vocab_size"], "num_updates": meta["num_updates"],
            "names": cfg.names, "train_config": train_config_to_dict(cfg), "token_ids": token_ids, **extra}
    yield _Weights(get_family(cfg.names["model"]), model.cfg, _StateDict(unique_state_dict(model)), token_ids,
                   artifacts_dir, info, extra)


def _pretrained_source(path: str | None) -> tuple[str, dict[str, Any]] | None:
    """(folder, bos/eos/pad ids) of the transformers or consolidated folder a run started from, when it is
    still there: its tokenizer, chat template and generation config are the model's own, byte for byte (the
    data folder holds a re-saved tokenizer, and may pad with another token)."""
    if not path or not os.path.isdir(path):
        return None
    from bigseq.checkpoint.pretrained import is_hf_folder
    if is_consolidated(path):
        info, _ = read_info(path)
        return path, info.get("token_ids") or {"pad_token_id": info.get("pad_idx")}
    if is_hf_folder(path):
        c = hf_files.read_hf_config(path)
        return path, {k: c[k] for k in hf_files.TOKEN_ID_FIELDS if k in c}
    return None


def _check_names(present: set[str], needed: set[str], where: str, fix: str) -> None:
    """Before anything is written: every tensor a group reads is there, and nothing is left over."""
    missing, extra = sorted(needed - present), sorted(present - needed)
    if missing:
        raise BigseqError(f"{where} has no '{missing[0]}' ({len(missing)} tensors missing); {fix}")
    if extra:
        raise BigseqError(f"{where} has tensors this config does not use: {extra[:5]}; {fix}")


def to_safetensors(path: str, out_dir: str, *, data: str | None = None, dtype: str = "auto",
                   max_shard_size: str = DEFAULT_SHARD_SIZE) -> str:
    """A training checkpoint (any ZeRO stage, pipeline too) or a consolidated folder -> a consolidated folder."""
    cast, shard_bytes, staging = parse_dtype(dtype), parse_size(max_shard_size), Staging(out_dir)
    with open_weights(path, data) as w, staging as tmp:
        writer = ShardWriter(tmp, shard_bytes, cast, after_flush=w.tensors.release)
        for name in w.tensors.names():
            writer.add((name,), (w.tensors.get(name),))
        saved = writer.close()
        hf_files.copy_artifacts(w.artifacts_dir, tmp)
        write_info(tmp, w.family.name, w.cfg, dtype=saved, **w.info)
    return out_dir


def to_hf(path: str, out_dir: str, *, data: str | None = None, dtype: str = "auto",
          max_shard_size: str = DEFAULT_SHARD_SIZE) -> str:
    """A training checkpoint or consolidated folder of a family with an HF adapter -> a transformers folder
    (config.json, weights, and the tokenizer / chat template / generation config files of its source)."""
    cast, shard_bytes, staging = parse_dtype(dtype), parse_size(max_shard_size), Staging(out_dir)
    with open_weights(path, data) as w:
        if w.family.hf_adapter is None:
            raise BigseqError(f"to-hf: the '{w.family.name}' family has no HuggingFace adapter; "
                              f"use `bigseq convert to-safetensors`")
        adapter = w.family.hf_adapter.adapter_for_cfg(w.cfg)
        hf_config = adapter.hf_config(w.cfg, **w.hf_extra, **w.token_ids)
        groups = list(adapter.groups(w.cfg))
        present = set(w.tensors.names()) - set(adapter.our_aliases(w.cfg))  # a shared table is written once
        _check_names(present, {n for ours, _, _ in groups for n in ours}, path,
                     "it was saved by another version of the model code")
        with staging as tmp:
            writer = ShardWriter(tmp, shard_bytes, cast, after_flush=w.tensors.release)
            for ours, theirs, transform in groups:
                writer.add(theirs, transform.to_hf(tuple(w.tensors.get(n) for n in ours)))
            fixed = adapter.fixed_hf_tensors(w.cfg, cast or writer.main_dtype(), hf_config.pad_token_id)
            writer.add(list(fixed), tuple(fixed.values()))
            saved = writer.close()
            write_json(os.path.join(tmp, "config.json"), hf_files.export_config(hf_config, dtype_name(saved)))
            copied = hf_files.copy_artifacts(w.artifacts_dir, tmp)
            make_generation_config = getattr(w.family.hf_adapter, "generation_config", None)
            if make_generation_config is not None and "generation_config.json" not in copied:
                write_json(os.path.join(tmp, "generation_config.json"), make_generation_config(hf_config))
            if getattr(hf_config, "is_encoder_decoder", False):
                hf_files.declare_fast_tokenizer(tmp, hf_config)
    return out_dir


def from_hf(hf_dir: str, out_dir: str, *, dtype: str = "auto", max_shard_size: str = DEFAULT_SHARD_SIZE) -> str:
    """A transformers folder of a model type some family converts -> a consolidated bigseq folder (with the
    source's tokenizer, chat template and generation config files)."""
    from bigseq.config.train_config import load_components
    load_components(None)
    cast, shard_bytes = parse_dtype(dtype), parse_size(max_shard_size)
    hf_config = hf_files.read_hf_config(hf_dir)
    hf_files.refuse_unsupported(hf_config)
    family = hf_family(hf_config.get("model_type"))
    adapter = family.hf_adapter.adapter_for_hf(hf_config)
    model_cfg = adapter.cfg_from_hf(hf_config)
    hf_files.check_vocab_fits(hf_dir, hf_config)
    staging = Staging(out_dir)
    with TensorReader(hf_dir) as reader:
        groups = list(adapter.groups(model_cfg))
        pad = hf_config.get("pad_token_id")
        fixed = set(adapter.fixed_hf_tensors(model_cfg, torch.float32, pad))
        present = {n for n in reader.names() if not n.endswith(adapter.ignored_suffixes)}
        for name in fixed & present:  # tables of the config: checked, not converted
            adapter.check_fixed(model_cfg, name, reader.get(name), pad)
        present -= fixed | set(adapter.hf_aliases(model_cfg))
        _check_names(present, {n for _, theirs, _ in groups for n in theirs}, f"HF folder {hf_dir}",
                     "the weights do not match config.json (layer count, or tie_word_embeddings)")
        with staging as tmp:
            writer = ShardWriter(tmp, shard_bytes, cast, after_flush=reader.release)
            for ours, theirs, transform in groups:
                writer.add(ours, transform.from_hf(tuple(reader.get(n) for n in theirs)))
            saved = writer.close()
            hf_files.copy_artifacts(hf_dir, tmp)
            token_ids = {k: hf_config[k] for k in hf_files.TOKEN_ID_FIELDS if k in hf_config}  # None kept: no bos
            write_info(tmp, family.name, model_cfg, dtype=saved, pad_idx=pad, **adapter.model_sizes(hf_config),
                       token_ids=token_ids, source=os.path.abspath(hf_dir))
    return out_dir
