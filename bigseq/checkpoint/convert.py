"""Consolidated model folders: bigseq checkpoint -> safetensors / HF, HF -> bigseq.

A consolidated folder holds ``model.safetensors`` (fp32, the model's own keys),
``config.json`` (``bigseq_format: consolidated``, the model name and config,
and the training config when there was one) and the tokenizer files when known.
``--finetune-from-model`` accepts it (see manager.load_weights_only).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile

import torch

from bigseq.atomic_files import write_json
from bigseq.config import build_config
from bigseq.errors import BigseqError
from bigseq.models.family import get_family, hf_family

FORMAT = "consolidated"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt")


class _Staging:
    """Write into a hidden sibling folder; rename it onto out_dir only when complete."""

    def __init__(self, out_dir: str):
        self.out_dir = os.path.abspath(out_dir.rstrip("/"))
        if os.path.isdir(self.out_dir) and os.listdir(self.out_dir):
            raise BigseqError(f"{out_dir} exists and is not empty; choose a new output folder")
        os.makedirs(os.path.dirname(self.out_dir), exist_ok=True)

    def __enter__(self) -> str:
        self.path = tempfile.mkdtemp(dir=os.path.dirname(self.out_dir), prefix=".convert-")
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.path, self.out_dir)  # rename(2) may replace an empty folder
        else:
            shutil.rmtree(self.path, ignore_errors=True)


def _save_tensors(state: dict[str, torch.Tensor], path: str) -> None:
    from safetensors.torch import save_file
    save_file({k: v.detach().to("cpu").contiguous() for k, v in state.items()}, path, metadata={"format": "pt"})


def _copy_tokenizer(src_dir: str | None, dest: str) -> bool:
    names = [n for n in TOKENIZER_FILES if src_dir and os.path.isfile(os.path.join(src_dir, n))]
    for name in names:
        shutil.copy2(os.path.join(src_dir, name), os.path.join(dest, name))
    return bool(names)


def to_safetensors(path: str, out_dir: str, *, data: str | None = None) -> str:
    """A training checkpoint (any ZeRO stage, pipeline too) -> a consolidated fp32 folder."""
    from bigseq.checkpoint.inference import load_for_inference
    from bigseq.config.train_config import train_config_to_dict
    cfg, task, model, meta = load_for_inference(path, data=data)
    with _Staging(out_dir) as tmp:
        _save_tensors({k: v.float() for k, v in model.state_dict().items()}, os.path.join(tmp, WEIGHTS_FILE))
        _copy_tokenizer(cfg.task.data, tmp)
        write_json(os.path.join(tmp, "config.json"), {
            "bigseq_format": FORMAT, "model_name": cfg.names["model"], "model": dataclasses.asdict(model.cfg),
            "pad_idx": task.pad_idx, "vocab_size": meta["vocab_size"], "num_updates": meta["num_updates"],
            "names": cfg.names, "train_config": train_config_to_dict(cfg)})
    return out_dir


def to_hf(path: str, out_dir: str, *, data: str | None = None) -> str:
    """A checkpoint of a family with an HF adapter -> a transformers folder (config.json, model.safetensors,
    tokenizer)."""
    from bigseq.checkpoint.inference import load_for_inference
    cfg, task, model, _ = load_for_inference(path, data=data)
    adapter = get_family(cfg.names["model"]).hf_adapter
    if adapter is None:
        raise BigseqError(f"to-hf: the '{cfg.names['model']}' family has no HuggingFace adapter; "
                          f"use `bigseq convert to-safetensors`")
    token_ids = {"pad_token_id": task.pad_idx, "eos_token_id": task.eos_idx}
    tokenizer = _load_tokenizer(cfg.task.data)
    if tokenizer is not None and tokenizer.bos_idx is not None:
        token_ids["bos_token_id"] = tokenizer.bos_idx
    hf_config = adapter.hf_config_from_cfg(model.cfg, **token_ids)
    state = _without_aliases(adapter.to_hf_state_dict(model, model.cfg))
    with _Staging(out_dir) as tmp:
        _save_tensors({k: v.float() for k, v in state.items()}, os.path.join(tmp, WEIGHTS_FILE))
        hf_config.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save(tmp)
    return out_dir


def _without_aliases(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a tensor that is another one (a tied head is the embedding): safetensors refuses shared
    tensors, and transformers re-ties from tie_word_embeddings."""
    seen, out = set(), {}
    for key, tensor in state.items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            out[key] = tensor
    return out


def _load_tokenizer(data_dir: str | None):
    from bigseq.data.tokenizer import Tokenizer
    if not data_dir or not os.path.isfile(os.path.join(data_dir, "tokenizer.json")):
        return None
    return Tokenizer.load(data_dir)


def read_hf_state_dict(hf_dir: str) -> dict[str, torch.Tensor]:
    """model.safetensors, its sharded form (model.safetensors.index.json) or pytorch_model.bin."""
    from safetensors.torch import load_file
    single, index = os.path.join(hf_dir, WEIGHTS_FILE), os.path.join(hf_dir, WEIGHTS_FILE + ".index.json")
    if os.path.isfile(single):
        return load_file(single)
    if os.path.isfile(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(os.path.join(hf_dir, shard)).items()}
    if os.path.isfile(os.path.join(hf_dir, "pytorch_model.bin")):
        return torch.load(os.path.join(hf_dir, "pytorch_model.bin"), map_location="cpu", weights_only=True)
    raise BigseqError(f"{hf_dir} has no {WEIGHTS_FILE}, sharded safetensors or pytorch_model.bin; "
                      f"save the model with transformers' save_pretrained")


def from_hf(hf_dir: str, out_dir: str) -> str:
    """A transformers folder of a model type some family converts -> a consolidated bigseq folder (with the
    HF tokenizer files)."""
    from bigseq.config.train_config import load_components
    load_components(None)
    config_path = os.path.join(hf_dir, "config.json")
    if not os.path.isfile(config_path):
        raise BigseqError(f"{hf_dir} has no config.json; pass a folder saved by transformers' save_pretrained")
    with open(config_path) as f:
        hf_config = json.load(f)
    family = hf_family(hf_config.get("model_type"))
    model_cfg = family.hf_adapter.cfg_from_hf_config(hf_config)
    state = family.hf_adapter.from_hf_state_dict(read_hf_state_dict(hf_dir), model_cfg)
    with _Staging(out_dir) as tmp:
        _save_tensors({k: v.float() for k, v in state.items()}, os.path.join(tmp, WEIGHTS_FILE))
        _copy_tokenizer(hf_dir, tmp)
        write_json(os.path.join(tmp, "config.json"), {
            "bigseq_format": FORMAT, "model_name": family.name, "model": dataclasses.asdict(model_cfg),
            "pad_idx": hf_config.get("pad_token_id"), "vocab_size": model_cfg.vocab_size,
            "source": os.path.abspath(hf_dir)})
    return out_dir


def is_consolidated(folder: str) -> bool:
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        return json.load(f).get("bigseq_format") == FORMAT


def load_consolidated(folder: str) -> tuple[dict, object, dict[str, torch.Tensor]]:
    """-> (config.json dict, the model's config object, fp32 state dict)."""
    from safetensors.torch import load_file

    from bigseq.config.train_config import load_components
    load_components(None)
    if not is_consolidated(folder):
        raise BigseqError(f"{folder} is not a bigseq consolidated folder (config.json with bigseq_format "
                          f"'{FORMAT}'); make one with `bigseq convert to-safetensors` or `from-hf`")
    with open(os.path.join(folder, "config.json")) as f:
        info = json.load(f)
    model_cfg = build_config(get_family(info["model_name"]).config_cls, None, info["model"])
    return info, model_cfg, load_file(os.path.join(folder, WEIGHTS_FILE))


def build_consolidated_model(folder: str) -> torch.nn.Module:
    """The model of a consolidated folder, weights loaded, in eval mode."""
    info, model_cfg, state = load_consolidated(folder)
    model = get_family(info["model_name"]).model_cls(model_cfg, pad_idx=info.get("pad_idx"))
    model.load_state_dict(state, strict=True)
    return model.eval()
