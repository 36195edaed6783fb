"""The consolidated model folder: what `bigseq convert to-safetensors` and `from-hf` write.

It holds the weights in the model's own names (``model.safetensors``, or shards plus
``model.safetensors.index.json`` as transformers lays them out; the source's dtype unless
``--dtype`` says otherwise), ``config.json`` (``bigseq_format: consolidated``, the model name and
config, the token ids, and the training config when there was one) and the tokenizer, chat
template and generation config files of its source, byte for byte. ``--finetune-from-model``,
``to-hf`` and ``to-safetensors`` accept it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any

import torch

from bigseq.atomic_files import write_json
from bigseq.checkpoint.hf_read import TensorReader
from bigseq.checkpoint.hf_write import dtype_name
from bigseq.config import build_config
from bigseq.errors import BigseqError
from bigseq.models.family import get_family

FORMAT = "consolidated"


class Staging:
    """Write into a hidden sibling folder; rename it onto out_dir only when complete, so a failed or
    killed conversion leaves nothing that looks like a model."""

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


def write_info(folder: str, model_name: str, model_cfg, *, dtype: torch.dtype, **extra: Any) -> None:
    """config.json of a consolidated folder; ``extra``: pad_idx, vocab_size, token_ids, names, ..."""
    write_json(os.path.join(folder, "config.json"), {
        "bigseq_format": FORMAT, "model_name": model_name, "model": dataclasses.asdict(model_cfg),
        "dtype": dtype_name(dtype), **extra})


def is_consolidated(folder: str) -> bool:
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        return False
    try:
        with open(path) as f:
            info = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BigseqError(f"{path} is not valid JSON ({e}); pass a folder saved by transformers' save_pretrained "
                          f"or by `bigseq convert`") from None
    return isinstance(info, dict) and info.get("bigseq_format") == FORMAT


def read_info(folder: str) -> tuple[dict, object]:
    """-> (config.json dict, the model's config object)."""
    from bigseq.config.train_config import load_components
    load_components(None)
    if not is_consolidated(folder):
        raise BigseqError(f"{folder} is not a bigseq consolidated folder (config.json with bigseq_format "
                          f"'{FORMAT}'); make one with `bigseq convert to-safetensors` or `from-hf`")
    with open(os.path.join(folder, "config.json")) as f:
        info = json.load(f)
    return info, build_config(get_family(info["model_name"]).config_cls, None, info["model"])


def load_consolidated(folder: str) -> tuple[dict, object, dict[str, torch.Tensor]]:
    """-> (config.json dict, the model's config object, state dict in the dtype it was saved in)."""
    info, model_cfg = read_info(folder)
    with TensorReader(folder) as reader:
        return info, model_cfg, {name: reader.get(name) for name in reader.names()}


SIZES = ("src_vocab_size", "tgt_vocab_size")
"""What an encoder-decoder's constructor needs besides its config (a decoder-only config has its vocabulary)."""


def unique_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with a module shared by two parents (--share-all-embeddings) listed once, under
    its parameter name: safetensors refuses two names for one storage, and a converter reads each tensor once."""
    unique = {n for n, _ in model.named_parameters()}
    aliases = {n for n, _ in model.named_parameters(remove_duplicate=False)} - unique
    return {k: v for k, v in model.state_dict().items() if k not in aliases}


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """load_state_dict, strict but for the second name of a shared module (see unique_state_dict)."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    aliases = set(model.state_dict()) - set(unique_state_dict(model))
    missing = [k for k in missing if k not in aliases]
    if missing or unexpected:
        raise BigseqError(f"{where} does not match its config.json (missing {missing[:3]}, unexpected "
                          f"{unexpected[:3]}); convert it again")


def new_model(model_name: str, model_cfg, info: dict) -> torch.nn.Module:
    """The family's model, default-initialized, sized from config.json's info (an encoder-decoder's
    source and target vocabularies are there, not in its config)."""
    sizes = {k: info[k] for k in SIZES if k in info}
    return get_family(model_name).model_cls(model_cfg, pad_idx=info.get("pad_idx"), **sizes)


def build_consolidated_model(folder: str) -> torch.nn.Module:
    """The model of a consolidated folder (fp32 parameters), weights loaded, in eval mode."""
    info, model_cfg, state = load_consolidated(folder)
    model = new_model(info["model_name"], model_cfg, info)
    load_weights(model, state, folder)
    return model.eval()
