"""Load a trained checkpoint as a plain torch model (validate, eval-lm, generate).

Works for every ZeRO stage: stage 0 fp32 reads the module weights; otherwise
DeepSpeed's zero_to_fp32 consolidates the fp32 master weights from the
partitioned optimizer states. Pipeline checkpoints read their per-layer files,
universal ones their per-parameter fp32 files.
"""

from __future__ import annotations

import json
import os

import torch

from bigseq import tasks
from bigseq.checkpoint import files
from bigseq.config.train_config import load_components, train_config_from_dict
from bigseq.distributed import cpu_allocator
from bigseq.errors import BigseqError


def consolidated_state_dict(save_dir: str, tag: str, meta: dict) -> dict[str, torch.Tensor]:
    ckpt_dir = os.path.join(save_dir, tag)
    precision = meta["cfg"]["distributed"]["precision"]
    if meta["zero_stage"] == 0 and precision == "fp32":
        path = os.path.join(ckpt_dir, "mp_rank_00_model_states.pt")
        if not os.path.exists(path):
            raise BigseqError(f"{ckpt_dir} has no mp_rank_00_model_states.pt; the checkpoint is incomplete")
        return torch.load(path, map_location="cpu", weights_only=False)["module"]
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    return get_fp32_state_dict_from_zero_checkpoint(save_dir, tag=tag)


def pipeline_state_dict(ckpt_dir: str, layers) -> dict[str, torch.Tensor]:
    """A pipeline checkpoint's per-layer files -> the plain model's state dict (ZeRO 0/1 keep whole weights there)."""
    from bigseq.distributed.pipeline import consolidate_checkpoint
    return consolidate_checkpoint(ckpt_dir, layers)


def universal_state_dict(ckpt_dir: str) -> dict[str, torch.Tensor]:
    """A universal checkpoint's zero/<name>/fp32.pt files (bigseq writes them in plain-model names)."""
    zero = os.path.join(ckpt_dir, "zero")
    return {name: torch.load(os.path.join(zero, name, "fp32.pt"), map_location="cpu", weights_only=False)["param"]
            for name in sorted(os.listdir(zero)) if os.path.isfile(os.path.join(zero, name, "fp32.pt"))}


def plain_state_dict(save_dir: str, tag: str, meta: dict, task) -> dict[str, torch.Tensor]:
    """Any bigseq training checkpoint (ZeRO 0-3, pipeline, universal) -> the plain model's fp32 state dict."""
    from bigseq import registry
    from bigseq.checkpoint.pipeline import pipeline_size
    ckpt_dir = os.path.join(save_dir, tag)
    if meta.get("universal"):
        return universal_state_dict(ckpt_dir)
    tp = files.tensor_parallel_size(meta)
    if tp > 1:  # each rank's files hold its slices; the universal conversion merges them by AutoTP's schema
        raise BigseqError(f"{ckpt_dir} holds --tensor-parallel-size {tp} slices; run `bigseq convert universal "
                          f"{ckpt_dir}` (saved with --zero-stage 1-3) and use the universal checkpoint")
    if pipeline_size(meta) > 1:
        cfg = train_config_from_dict(meta["cfg"])
        model_cls = registry.MODEL_REGISTRY.get(cfg.names["model"]).cls
        return pipeline_state_dict(ckpt_dir, model_cls.pipeline_layers(cfg.model, task))
    return consolidated_state_dict(save_dir, tag, meta)


def load_for_inference(path: str, *, data: str | None = None, user_dir: str | None = None):
    """-> (cfg, task, model in eval mode, meta) from a save dir, one of its tag folders, or a consolidated folder
    made from a training checkpoint (to-safetensors, average-checkpoints)."""
    # each decoding or evaluation step allocates the buffers the last one freed: keep them mapped
    # (a CPU beam search page-faulted 282k times over 256 sentences, 100k kept)
    cpu_allocator.keep_freed_memory()
    load_components(user_dir)
    from bigseq.checkpoint.consolidated import is_consolidated
    if os.path.isdir(path) and is_consolidated(path):
        return _load_consolidated(path, data)
    save_dir, tag = files.resolve_checkpoint(path)
    meta = files.read_meta(os.path.join(save_dir, tag))
    saved = dict(meta["cfg"])
    if data is not None:
        saved["task"] = {**saved["task"], "data": data}
    cfg = train_config_from_dict(saved)
    task = tasks.setup_task(cfg.names["task"], cfg.task)
    if task.vocab_size != meta["vocab_size"]:
        raise BigseqError(f"the data in {cfg.task.data} has a vocabulary of {task.vocab_size} but the checkpoint "
                          f"{meta['vocab_size']}; pass --data with the data the model was trained on")
    model = task.build_model(cfg.names["model"], cfg.model)
    state = plain_state_dict(save_dir, tag, meta, task)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BigseqError(f"checkpoint {save_dir}/{tag} does not match the model (missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]}); it was saved by another version of the model code")
    model.eval()
    return cfg, task, model, meta


def _load_consolidated(folder: str, data: str | None):
    from bigseq.checkpoint.consolidated import load_consolidated
    info, model_cfg, state = load_consolidated(folder)
    saved = dict(info["train_config"]) if "train_config" in info else _config_without_run(folder, info, data)
    if data is not None:
        saved["task"] = {**saved["task"], "data": data}
    cfg = train_config_from_dict(saved)
    task = tasks.setup_task(cfg.names["task"], cfg.task)
    vocab_size = info.get("vocab_size", info.get("tgt_vocab_size"))
    if task.vocab_size > vocab_size:
        raise BigseqError(f"the data in {cfg.task.data} has a vocabulary of {task.vocab_size} but {folder} "
                          f"{vocab_size}; pass --data with the data the model was trained on")
    model = task.build_model(cfg.names["model"], model_cfg)
    from bigseq.checkpoint.consolidated import load_weights
    load_weights(model, state, folder)
    meta = {"vocab_size": vocab_size, "num_updates": info.get("num_updates"), "cfg": saved}
    return cfg, task, model.eval(), meta


def _config_without_run(folder: str, info: dict, data: str | None) -> dict:
    """A folder converted from fairseq or HuggingFace records no bigseq run: the task is built from DATA,
    translation for an encoder-decoder (with the language pair and padding fairseq recorded, the model's
    positions), language modeling otherwise; the model config is the folder's."""
    if data is None:
        raise BigseqError(f"{folder} was converted from another toolkit and records no data dir; pass the data "
                          f"dir it was trained on (`bigseq generate DATA --path {folder}`)")
    from bigseq.checkpoint.fairseq_import import FAIRSEQ_RECORD
    from bigseq.config.sections import COMPONENT_DEFAULTS
    record = os.path.join(folder, FAIRSEQ_RECORD)
    fairseq_task = {}
    if os.path.isfile(record):
        with open(record) as f:
            fairseq_task = json.load(f).get("task") or {}
    model = info["model"]
    if "src_vocab_size" in info:
        kept = ("source_lang", "target_lang", "left_pad_source", "left_pad_target")
        # args-style checkpoints (fairseq <= 0.9) stored the padding flags as the strings 'True'/'False'
        task = {k: fairseq_task[k] in (True, "True") if k.startswith("left_pad") else fairseq_task[k]
                for k in kept if fairseq_task.get(k) is not None}
        task.update(max_source_positions=model["max_source_positions"],
                    max_target_positions=model["max_target_positions"])
        name = "translation"
    else:
        task, name = {}, "language_modeling"
    # an arch name no registry knows: the model config is the folder's, not an architecture's defaults
    names = {**COMPONENT_DEFAULTS, "task": name, "model": info["model_name"], "arch": f"folder:{info['model_name']}"}
    return {"names": names, "task": {**task, "data": data}, "model": model}
