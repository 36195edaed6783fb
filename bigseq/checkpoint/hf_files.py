"""HF folders around the weights: config.json in (what is refused) and out (what every transformers
major reads), and the tokenizer / chat template / generation config files, copied byte for byte.

Refusals name the config.json field and what to do: a model whose weights bigseq would convert
into something that computes differently (remote code, quantized weights, experts, an image
tower) is stopped before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from bigseq.atomic_files import write_json
from bigseq.errors import BigseqError

ARTIFACTS = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
             "added_tokens.json", "vocab.json", "merges.txt", "vocab.txt", "chat_template.jinja",
             "chat_template.json", "generation_config.json")
"""Files that travel with the weights unchanged (never rebuilt: eos lists, chat templates and
sampling defaults would be lost)."""

_MOE_FIELDS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts", "num_experts_per_tok",
               "n_shared_experts", "num_shared_experts")
_MULTIMODAL_FIELDS = ("vision_config", "text_config", "audio_config", "image_token_id", "image_token_index")
TOKEN_ID_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def read_hf_config(hf_dir: str) -> dict[str, Any]:
    path = os.path.join(hf_dir, "config.json")
    if not os.path.isfile(path):
        raise BigseqError(f"{hf_dir} has no config.json; pass a folder saved by transformers' save_pretrained")
    with open(path) as f:
        return json.load(f)


def refuse_unsupported(c: dict[str, Any]) -> None:
    """One line naming the field, for configs no adapter should see (their model_type may look plain)."""
    if c.get("auto_map"):
        raise BigseqError(f"HF config.json: auto_map is set (the model ships its own modeling code, which bigseq "
                          f"does not run or check); if model_type '{c.get('model_type')}' is a stock transformers "
                          f"type whose class computes the same (early Phi-3 uploads), delete auto_map from "
                          f"config.json and convert again")
    if c.get("quantization_config"):
        method = c["quantization_config"].get("quant_method", "?") if isinstance(c["quantization_config"], dict) \
            else "?"
        raise BigseqError(f"HF config.json: quantization_config is set ({method}); convert the unquantized "
                          f"(bf16/fp16/fp32) checkpoint instead")
    architectures = c.get("architectures") or []
    multimodal = [k for k in _MULTIMODAL_FIELDS if c.get(k) is not None]
    # text encoder-decoders (FSMT, M2M100) are ForConditionalGeneration too; their adapters judge them
    if multimodal or (any(a.endswith("ForConditionalGeneration") for a in architectures)
                      and not c.get("is_encoder_decoder")):
        field = multimodal[0] if multimodal else f"architectures={architectures}"
        raise BigseqError(f"HF config.json: {field} marks a multimodal model; bigseq converts text models: "
                          f"extract the text model into its own checkpoint first")
    experts = [k for k in _MOE_FIELDS if c.get(k)]
    if experts:
        raise BigseqError(f"HF config.json: {experts[0]}={c[experts[0]]} makes this a mixture-of-experts model, "
                          f"which bigseq does not support; use a dense checkpoint")


def tokenizer_size(hf_dir: str) -> int | None:
    """Ids the folder's tokenizer.json can produce (highest id + 1); None when there is none."""
    path = os.path.join(hf_dir, "tokenizer.json")
    if not os.path.isfile(path):
        return None
    from tokenizers import Tokenizer
    try:
        vocab = Tokenizer.from_file(path).get_vocab(with_added_tokens=True)
    except Exception as e:  # tokenizers raises plain Exceptions for bad JSON
        raise BigseqError(f"{path}: not a valid tokenizer.json ({str(e).splitlines()[0]}); "
                          f"save the tokenizer again with transformers") from None
    return max(vocab.values()) + 1 if vocab else 0


def check_vocab_fits(hf_dir: str, c: dict[str, Any]) -> None:
    tokens = tokenizer_size(hf_dir)
    if tokens is not None and c.get("vocab_size") is not None and c["vocab_size"] < tokens:
        raise BigseqError(f"HF config.json: vocab_size={c['vocab_size']} is smaller than the tokenizer's {tokens} "
                          f"ids (tokenizer.json): the tokenizer does not belong to these weights; use the "
                          f"tokenizer saved with the model")


def copy_artifacts(src_dir: str | None, dest: str) -> list[str]:
    names = [n for n in ARTIFACTS if src_dir and os.path.isfile(os.path.join(src_dir, n))]
    for name in names:
        shutil.copyfile(os.path.join(src_dir, name), os.path.join(dest, name))
    return names


def export_config(hf_config, dtype_name: str) -> dict[str, Any]:
    """The config.json to write for a transformers config object (what save_pretrained writes), readable by
    transformers 4 and 5 alike: both RoPE key styles, ``dtype`` (5) and ``torch_dtype`` (4), and the
    model class in ``architectures``."""
    c = hf_config.to_diff_dict()
    full = hf_config.to_dict()
    for key in ("rope_parameters", "rope_theta", "rope_scaling"):  # kept even where they equal the defaults
        if full.get(key) is not None:
            c[key] = full[key]
    with_both_rope_styles(c)
    c["dtype"] = c["torch_dtype"] = dtype_name
    if not c.get("architectures"):
        from transformers.models.auto import modeling_auto
        names = (modeling_auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES if full.get("is_encoder_decoder")
                 else modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
        name = names.get(c.get("model_type"))
        c["architectures"] = [name] if name else None
    return c


def declare_fast_tokenizer(folder: str, hf_config) -> bool:
    """A tokenizer.json that came without a tokenizer_config.json: name PreTrainedTokenizerFast and the
    special tokens of the ids, or AutoTokenizer would pick the model type's own slow class (FSMTTokenizer,
    M2M100Tokenizer), which needs vocabulary files bigseq does not have. -> whether it wrote one."""
    path = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(path) or os.path.isfile(os.path.join(folder, "tokenizer_config.json")):
        return False
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(path)
    config = {"tokenizer_class": "PreTrainedTokenizerFast"}
    for role in ("bos", "pad", "eos", "unk"):
        token_id = getattr(hf_config, f"{role}_token_id", None)
        token = tok.id_to_token(token_id) if token_id is not None else None
        if token is not None:
            config[f"{role}_token"] = token
    write_json(os.path.join(folder, "tokenizer_config.json"), config)
    return True


def with_both_rope_styles(c: dict[str, Any]) -> dict[str, Any]:
    """Add transformers 4's ``rope_theta`` + ``rope_scaling`` next to 5's ``rope_parameters``, or the
    reverse: 4.x reads a file holding only ``rope_parameters`` as theta 10000, no scaling, silently."""
    params = c.get("rope_parameters")
    if isinstance(params, dict) and isinstance(params.get("full_attention"), dict):  # per layer type (Gemma 3)
        if isinstance(params.get("sliding_attention"), dict):
            c.setdefault("rope_local_base_freq", params["sliding_attention"].get("rope_theta"))
        params = params["full_attention"]
    if isinstance(params, dict):
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
        c.setdefault("rope_theta", params.get("rope_theta"))
        c["rope_scaling"] = scaling if scaling.get("rope_type", "default") != "default" else None
    elif "rope_theta" in c:
        scaling = dict(c.get("rope_scaling") or {})
        scaling.setdefault("rope_type", scaling.pop("type", "default"))
        c["rope_parameters"] = {**scaling, "rope_theta": c["rope_theta"]}
    return c
