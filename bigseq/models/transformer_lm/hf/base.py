"""The shared engine of the HF adapters: a key map of grouped templates with named transforms.

An adapter (one file per transformers ``model_type``) says three things: how a
config.json maps to a TransformerLMConfig and back (refusing what bigseq cannot
represent, by field name), whether a bigseq config is exactly its model type, and
its key map: a list of ``Mapping(ours, theirs, transform)`` where each side is a
tuple of name templates (``{i}`` = layer index) and the transform turns our
tensors into theirs (``to_hf``) and back (``from_hf``). Groups let one HF tensor
hold several of ours (GPT-2's fused ``c_attn``, Phi-3's ``qkv_proj``) and keep the
engine streaming-friendly: a group is converted as soon as its tensors are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from bigseq.errors import BigseqError
from bigseq.models.transformer_lm.config import TransformerLMConfig

Tensors = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Transform:
    """A named, invertible tensor transform between our group of tensors and HF's."""

    name: str
    to_hf: Callable[[Tensors], Tensors]
    from_hf: Callable[[Tensors], Tensors]


def _same(ts: Tensors) -> Tensors:
    return ts


def _transpose(ts: Tensors) -> Tensors:
    return tuple(t.t().contiguous() for t in ts)


def _concat(ts: Tensors) -> Tensors:
    return (torch.cat(ts, 0),)


def split_rows(sizes: Callable[[], tuple[int, ...]]) -> Callable[[Tensors], Tensors]:
    def split(ts: Tensors) -> Tensors:
        return tuple(t.contiguous() for t in torch.split(ts[0], sizes(), dim=0))
    return split


IDENTITY = Transform("identity", _same, _same)
TRANSPOSE = Transform("transpose", _transpose, _transpose)  # GPT-2's Conv1D stores (in, out)


def fuse_rows(sizes: Callable[[], tuple[int, ...]], *, transposed: bool = False) -> Transform:
    """Several of our tensors stacked along dim 0 into one HF tensor (q|k|v, gate|up); ``transposed``:
    the HF tensor is stored (in, out) as GPT-2's Conv1D is."""
    split = split_rows(sizes)
    if not transposed:
        return Transform("fuse_rows", _concat, split)
    return Transform("fuse_rows_transposed", lambda ts: _transpose(_concat(ts)),
                     lambda ts: split(_transpose(ts)))


@dataclass(frozen=True)
class Mapping:
    ours: tuple[str, ...]
    theirs: tuple[str, ...]
    transform: Transform = IDENTITY
    per_layer: bool = field(default=False)
    """Templates hold ``{i}``: the mapping repeats for every decoder layer."""


def one(ours: str, theirs: str, transform: Transform | None = None) -> Mapping:
    return Mapping((ours,), (theirs,), transform or IDENTITY, per_layer="{i}" in ours)


def group(ours: tuple[str, ...], theirs: tuple[str, ...], transform: Transform) -> Mapping:
    return Mapping(ours, theirs, transform, per_layer="{i}" in ours[0])


def expand(mappings: list[Mapping], layers: int) -> Iterator[tuple[tuple[str, ...], tuple[str, ...], Transform]]:
    """Concrete (ours, theirs, transform) groups in checkpoint order: a run of per-layer mappings is
    repeated layer by layer (layer 0's tensors, then layer 1's, ...)."""
    run: list[Mapping] = []
    for m in [*mappings, None]:
        if m is not None and m.per_layer:
            run.append(m)
            continue
        for i in range(layers):
            for r in run:
                yield tuple(t.format(i=i) for t in r.ours), tuple(t.format(i=i) for t in r.theirs), r.transform
        run = []
        if m is not None:
            yield m.ours, m.theirs, m.transform


class HFAdapter:
    """One transformers model type. Subclasses set ``model_type`` and implement the four methods."""

    model_type: str = ""
    ignored_suffixes: tuple[str, ...] = ("rotary_emb.inv_freq",)
    """HF buffers that may appear in older checkpoints and carry no weights."""

    def represents(self, cfg: TransformerLMConfig) -> bool:
        """Whether this model type computes exactly what ``cfg`` does."""
        raise NotImplementedError

    def cfg_from_hf(self, c: dict[str, Any]) -> TransformerLMConfig:
        raise NotImplementedError

    def hf_config(self, cfg: TransformerLMConfig, **token_ids: Any):
        """A transformers config object equal to ``cfg``."""
        raise NotImplementedError

    def key_map(self, cfg: TransformerLMConfig) -> list[Mapping]:
        raise NotImplementedError

    # the engine ---------------------------------------------------------------
    def groups(self, cfg: TransformerLMConfig) -> Iterator[tuple[tuple[str, ...], tuple[str, ...], Transform]]:
        """The key map as concrete (ours, theirs, transform) groups in checkpoint order: what a streaming
        converter walks, reading and writing one group at a time."""
        return expand(self.key_map(cfg), cfg.decoder_layers)

    def tied_head(self, cfg: TransformerLMConfig) -> tuple[str, str] | None:
        """(HF head, HF embedding) names when the head is the embedding; HF's state_dict lists both."""
        return None

    def to_hf_state_dict(self, sd: dict[str, torch.Tensor], cfg: TransformerLMConfig) -> dict[str, torch.Tensor]:
        sd = dict(sd)
        out: dict[str, torch.Tensor] = {}
        for ours, theirs, transform in expand(self.key_map(cfg), cfg.decoder_layers):
            tensors = transform.to_hf(tuple(take(sd, k, "model state dict") for k in ours))
            out.update(zip(theirs, tensors))
        if sd:
            raise BigseqError(f"model state dict has keys with no HF {self.model_type} equivalent: {sorted(sd)[:5]}")
        tied = self.tied_head(cfg)
        if tied is not None:
            out[tied[0]] = out[tied[1]]
        return out

    def from_hf_state_dict(self, hf_sd: dict[str, torch.Tensor], cfg: TransformerLMConfig) -> dict[str, torch.Tensor]:
        sd = {k: v for k, v in hf_sd.items() if not k.endswith(self.ignored_suffixes)}
        tied = self.tied_head(cfg)
        if tied is not None:
            sd.pop(tied[0], None)  # HF may or may not list the tied copy
        where = f"HF {self.model_type} state dict"
        out: dict[str, torch.Tensor] = {}
        for ours, theirs, transform in expand(self.key_map(cfg), cfg.decoder_layers):
            out.update(zip(ours, transform.from_hf(tuple(take(sd, k, where) for k in theirs))))
        if sd:
            raise BigseqError(f"{where} has keys this config does not use: {sorted(sd)[:5]}; "
                              f"check --decoder-layers and the tying of input/output embeddings")
        return out


def plain_layers(cfg: TransformerLMConfig) -> bool:
    """Pre-norm layers without the Gemma/OLMo 2 features (other norm placements, soft-capping, a softmax
    scale of its own, a rounded embedding scale, a local RoPE theta, linear RoPE scaling): the layers the
    GPT-2 and Llama-derived model types compute."""
    return (cfg.norm_placement == "pre" and cfg.attn_logit_softcap is None and cfg.final_logit_softcap is None
            and cfg.query_pre_attn_scalar is None and not cfg.embed_scale_in_weight_dtype
            and cfg.rope_local_theta is None and cfg.rope_scaling != "linear")


def take(sd: dict[str, torch.Tensor], key: str, where: str) -> torch.Tensor:
    if key not in sd:
        raise BigseqError(f"{where} has no '{key}'; the checkpoint does not match this config "
                          f"(family, layer count or tying)")
    return sd.pop(key)


def refuse(model_type: str, field_name: str, value: Any, fix: str) -> BigseqError:
    """The one-line refusal of a config.json value bigseq cannot represent."""
    return BigseqError(f"HF {model_type} config: {field_name}={value!r} is not supported; {fix}")
