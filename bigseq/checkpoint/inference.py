"""Load a trained checkpoint as a plain torch model (validate, eval-lm, generate).

Works for every ZeRO stage: stage 0 fp32 reads the module weights; otherwise
DeepSpeed's zero_to_fp32 consolidates the fp32 master weights from the
partitioned optimizer states. Pipeline checkpoints read their per-layer files,
universal ones their per-parameter fp32 files.
"""

from __future__ import annotations

import os

import torch

from bigseq import tasks
from bigseq.checkpoint import files
from bigseq.config.train_config import load_components, train_config_from_dict
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
    tp = meta["cfg"].get("distributed", {}).get("tensor_parallel_size", 1)
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
    if "train_config" not in info:
        raise BigseqError(f"{folder} was converted from a HuggingFace model and records no task; start a run from "
                          f"it with --finetune-from-model, or export it with `bigseq convert to-hf`")
    saved = dict(info["train_config"])
    if data is not None:
        saved["task"] = {**saved["task"], "data": data}
    cfg = train_config_from_dict(saved)
    task = tasks.setup_task(cfg.names["task"], cfg.task)
    if task.vocab_size > info["vocab_size"]:
        raise BigseqError(f"the data in {cfg.task.data} has a vocabulary of {task.vocab_size} but {folder} "
                          f"{info['vocab_size']}; pass --data with the data the model was trained on")
    model = task.build_model(cfg.names["model"], model_cfg)
    from bigseq.checkpoint.consolidated import load_weights
    load_weights(model, state, folder)
    meta = {"vocab_size": info["vocab_size"], "num_updates": info.get("num_updates"), "cfg": info["train_config"]}
    return cfg, task, model.eval(), meta
