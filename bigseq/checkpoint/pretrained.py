"""A pretrained model folder as the start of a run.

``--finetune-from-model FOLDER`` without ``--arch`` takes the architecture from the folder:
a consolidated bigseq folder (`bigseq convert from-hf` / `to-safetensors`) or a transformers
folder of a model type some family converts, read directly. Runtime flags (dropout, kernels,
activation checkpointing) still come from the command line.
"""

from __future__ import annotations

import json
import os

from bigseq.checkpoint import consolidated, hf_files
from bigseq.checkpoint.weight_source import WeightSource, consolidated_source, hf_source
from bigseq.errors import BigseqError
from bigseq.models.family import get_family, hf_family


def is_hf_folder(path: str) -> bool:
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        return False
    try:
        with open(config) as f:
            info = json.load(f)
        return "model_type" in info and "bigseq_format" not in info
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BigseqError(f"--finetune-from-model {path}: config.json is not valid JSON ({e}); pass a folder "
                          f"saved by transformers' save_pretrained or by `bigseq convert`") from None


def model_of_folder(path: str | None) -> tuple[str, str, object] | None:
    """(model name, arch label, model config) of a consolidated or HF folder; None for anything else
    (a training checkpoint keeps its --arch)."""
    if not path or not os.path.isdir(path):
        return None
    is_hf_folder(path)  # a broken config.json: one line, before anything reads it
    if consolidated.is_consolidated(path):
        info, cfg = consolidated.read_info(path)
        return info["model_name"], info.get("names", {}).get("arch", info["model_name"]), cfg
    if not is_hf_folder(path):
        return None
    c = hf_files.read_hf_config(path)
    hf_files.refuse_unsupported(c)
    family = hf_family(c.get("model_type"))
    return family.name, f"hf:{c['model_type']}", family.hf_adapter.adapter_for_hf(c).cfg_from_hf(c)


def vocab_size_of_folder(path: str) -> int:
    """The (target) vocabulary of a consolidated or transformers folder's model."""
    if consolidated.is_consolidated(path):
        info = consolidated.read_info(path)[0]
        return info["vocab_size"] if "vocab_size" in info else info["tgt_vocab_size"]  # encoder-decoders: both sides
    c = hf_files.read_hf_config(path)
    return hf_family(c.get("model_type")).hf_adapter.adapter_for_hf(c).model_sizes(c)["vocab_size"]


def check_pad(path: str, model_name: str, pad_idx: int) -> None:
    """A family whose positions count from the pad id (fairseq's encoder-decoder) computes something else
    when the data pads with another id than the folder's model did."""
    if not getattr(get_family(model_name).hf_adapter, "POSITIONS_FROM_PAD", False):
        return
    if consolidated.is_consolidated(path):
        folder_pad = consolidated.read_info(path)[0].get("pad_idx")
    else:
        folder_pad = hf_files.read_hf_config(path).get("pad_token_id")
    if folder_pad != pad_idx:
        raise BigseqError(f"--finetune-from-model {path}: its model pads with id {folder_pad}, the data with "
                          f"{pad_idx}; positions count from the pad id, so binarize the data with the model's "
                          f"dictionary (pad {folder_pad})")


def weight_source(path: str, model_cfg) -> WeightSource:
    """The weights of a consolidated or transformers folder, for ``weight_source.load_into_engine``."""
    if consolidated.is_consolidated(path):
        return consolidated_source(path)
    c = hf_files.read_hf_config(path)
    return hf_source(path, hf_family(c.get("model_type")).hf_adapter.adapter_for_hf(c), model_cfg)
