"""ModelFamily: the one object that tells the rest of bigseq about a family of models.

The trainer, the DeepSpeed config, the memory estimate, checkpoint resume and the
HF converters read a family, never its config's field names, so a new family
touches only its own folder (plus tasks/ and data/). A family registered with
``register_family`` also registers its model class under the family's name; a
model registered alone with ``register_model`` (a --user-dir plugin) gets a plain
family: built by its ``build(cfg, task)`` then ``reset_parameters(seed)``, no
pipeline, no HF adapter, FLOPs of 6 per parameter and token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch.nn as nn

from bigseq import registry
from bigseq.config.fields import runtime_fields
from bigseq.errors import BigseqError


@dataclass(frozen=True)
class ModelDims:
    """Sizes that ZeRO-3's buckets and the memory estimate need, whatever the family calls them."""

    layers: int
    dim: int
    ffn_dim: int
    heads: int
    kv_heads: int
    vocab_size: int
    gated_ffn: bool
    head_dim: int = 0
    """Width of one attention head (0: dim / heads)."""

    @property
    def head_width(self) -> int:
        return self.head_dim or self.dim // self.heads


@dataclass(frozen=True, kw_only=True)
class ModelFamily:
    name: str
    """Model name (``--arch`` architectures map to it), e.g. 'transformer_lm'."""
    model_cls: type[nn.Module]
    config_cls: type
    build: Callable[[Any, Any, int], nn.Module]
    """(model config, task, seed) -> the model, every weight a function of (seed, parameter name)."""
    pipeline_layers: Optional[Callable[[Any, Any], list]] = None
    """(model config, task) -> the model as ordered PipelineLayers; None: no pipeline parallelism."""
    hf_adapter: Any = None
    """Module or object with HF_MODEL_TYPES, cfg_from_hf_config, hf_config_from_cfg, from_hf_state_dict,
    to_hf_state_dict, and for the streaming converters (checkpoint/convert.py) adapter_for_hf(config dict) /
    adapter_for_cfg(cfg): one model type's adapter with cfg_from_hf, hf_config, groups(cfg) (our names, HF names,
    transform in checkpoint order), tied_head(cfg) and ignored_suffixes (models/transformer_lm/hf/base.py). Optional:
    REFUSED_MODEL_TYPES (look-alike model types its adapter_for_hf refuses with the reason), generation_config(hf
    config) (the generation_config.json to-hf writes when the source has none), POSITIONS_FROM_PAD (fine-tuning
    data must pad with the model's id)."""
    dims: Optional[Callable[[Any], ModelDims]] = None
    """model config -> its sizes (None: unknown; ZeRO-3 keeps DeepSpeed's buffer sizes)."""
    attention_flops_per_token: Callable[[Any, int], float] = lambda cfg, seq_len: 0.0
    """(model config, sequence length) -> training FLOPs per token spent in attention scores."""

    def flops_per_token(self, cfg, num_params: int, seq_len: int) -> float:
        """Training FLOPs per token: 6N plus the family's attention term (PaLM's estimate)."""
        return 6.0 * num_params + self.attention_flops_per_token(cfg, seq_len)

    @property
    def runtime_fields(self) -> set[str]:
        """Config fields that may change on resume (dropouts, kernels, recomputation)."""
        return runtime_fields(self.config_cls)

    def check_pipeline(self, arch: str) -> None:
        if self.pipeline_layers is None:
            raise BigseqError(f"pipeline parallelism is not supported for the {self.name} family (--arch {arch}: "
                              f"its model defines no pipeline_layers); use --pipeline-parallel-size 1")


_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Register a family and its model class (under the family's name)."""
    registry.register_model(family.name, family.config_cls)(family.model_cls)
    _FAMILIES[family.name] = family
    return family


def get_family(model_name: str) -> ModelFamily:
    if model_name in _FAMILIES:
        return _FAMILIES[model_name]
    entry = registry.MODEL_REGISTRY.get(model_name)  # unknown names: the registry's one-line error
    return ModelFamily(name=model_name, model_cls=entry.cls, config_cls=entry.config_cls,
                       build=_plain_build(entry.cls))


def hf_family(model_type: str | None) -> ModelFamily:
    """The family whose HF adapter converts transformers' ``model_type``."""
    for family in _FAMILIES.values():
        if family.hf_adapter is not None and model_type in family.hf_adapter.HF_MODEL_TYPES:
            return family
        if family.hf_adapter is not None and model_type in getattr(family.hf_adapter, "REFUSED_MODEL_TYPES", ()):
            family.hf_adapter.adapter_for_hf({"model_type": model_type})  # raises the family's line on why not
    raise BigseqError(f"HF model_type '{model_type}' is not supported; bigseq converts {', '.join(hf_model_types())}")


def hf_model_types() -> list[str]:
    """Every transformers ``model_type`` a registered family converts (its adapter's HF_MODEL_TYPES)."""
    return sorted(t for f in _FAMILIES.values() if f.hf_adapter is not None for t in f.hf_adapter.HF_MODEL_TYPES)


def _plain_build(model_cls: type) -> Callable:
    def build(cfg, task, seed: int) -> nn.Module:
        builder = getattr(model_cls, "build", None)
        model = builder(cfg, task) if builder is not None else model_cls(cfg, task)
        reset = getattr(model, "reset_parameters", None)
        if reset is not None:
            reset(seed)
        return model
    return build
