"""The shared engine of the HF adapters: a key map of grouped templates with named transforms.

An adapter (one file per transformers ``model_type``) says three things: how a
config.json maps to a TransformerLMConfig and back (refusing what bigseq cannot
represent, by field name), whether a bigseq config is exactly its model type, and
its key map: a list of ``Mapping(ours, theirs, transform)`` where each side is a
tuple of name templates (``{i}`` = layer index) and the transform turns our
tensors into theirs (``to_hf``) and back (``from_hf``). Groups let one HF tensor
hold several of ours (GPT-2's fused ``c_attn``, Phi-3's ``qkv_proj``) and keep the
engine streaming-friendly: a group is converted as soon as its tensors are read.

A per-layer mapping repeats over one stack's layers (``stack``; ``layer_counts`` gives each
stack's count): decoder-only models have one, encoder-decoder models an encoder and a decoder
of their own depths. Beyond the key map an adapter may name tensors that are another one under
a second name (``hf_aliases``: HF's tied copies; ``our_aliases``: a module of ours shared by two
parents) and HF tensors computed from the config alone (``fixed_hf_tensors``: FSMT's sinusoidal
tables), written on export and checked, when present, on import.
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
    """Templates hold ``{i}``: the mapping repeats for every layer of its stack."""
    stack: str = "decoder"
    """The stack whose layers ``{i}`` runs over (a key of the adapter's ``layer_counts``)."""


def one(ours: str, theirs: str, transform: Transform | None = None, stack: str = "decoder") -> Mapping:
    return Mapping((ours,), (theirs,), transform or IDENTITY, per_layer="{i}" in ours, stack=stack)


def group(ours: tuple[str, ...], theirs: tuple[str, ...], transform: Transform, stack: str = "decoder") -> Mapping:
    return Mapping(ours, theirs, transform, per_layer="{i}" in ours[0], stack=stack)


def expand(mappings: list[Mapping], layers: int | dict[str, int]) -> Iterator[tuple[tuple[str, ...], tuple[str, ...],
                                                                                   Transform]]:
    """Concrete (ours, theirs, transform) groups in checkpoint order: a run of per-layer mappings of one
    stack is repeated layer by layer (layer 0's tensors, then layer 1's, ...). ``layers``: the layer
    count of each stack (an int: the decoder's)."""
    counts = {"decoder": layers} if isinstance(layers, int) else layers
    run: list[Mapping] = []
    for m in [*mappings, None]:
        if m is not None and m.per_layer and (not run or run[0].stack == m.stack):
            run.append(m)
            continue
        for i in range(counts[run[0].stack] if run else 0):
            for r in run:
                yield tuple(t.format(i=i) for t in r.ours), tuple(t.format(i=i) for t in r.theirs), r.transform
        run = [m] if m is not None and m.per_layer else []
        if m is not None and not m.per_layer:
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
    def layer_counts(self, cfg) -> dict[str, int]:
        """The layer count of each stack the key map's per-layer mappings run over."""
        return {"decoder": cfg.decoder_layers}

    def groups(self, cfg) -> Iterator[tuple[tuple[str, ...], tuple[str, ...], Transform]]:
        """The key map as concrete (ours, theirs, transform) groups in checkpoint order: what a streaming
        converter walks, reading and writing one group at a time."""
        return expand(self.key_map(cfg), self.layer_counts(cfg))

    def tied_head(self, cfg: TransformerLMConfig) -> tuple[str, str] | None:
        """(HF head, HF embedding) names when the head is the embedding; HF's state_dict lists both."""
        return None

    def hf_aliases(self, cfg) -> dict[str, str]:
        """HF names that are another HF tensor (tied weights) -> that tensor's name; HF's state_dict lists
        them, its files may or may not."""
        tied = self.tied_head(cfg)
        return {} if tied is None else {tied[0]: tied[1]}

    def our_aliases(self, cfg) -> dict[str, str]:
        """Our state-dict names that are another of our tensors (one module under two parents) -> its
        parameter name; the key map names the parameter only."""
        return {}

    def fixed_hf_tensors(self, cfg, dtype: torch.dtype, pad_idx: int | None = None) -> dict[str, torch.Tensor]:
        """HF tensors that are a function of the config and the pad id (no weights of ours): written on
        export, checked on import."""
        return {}

    def model_sizes(self, c: dict[str, Any]) -> dict[str, int]:
        """What a consolidated folder records, besides the config, to build the model from a config.json."""
        return {"vocab_size": c["vocab_size"]}

    def check_fixed(self, cfg, name: str, tensor: torch.Tensor, pad_idx: int | None = None) -> None:
        """An HF checkpoint's fixed tensor must be what the config computes (else it was trained, and
        bigseq would compute something else); a table HF grew for longer inputs is compared on its rows."""
        expected = self.fixed_hf_tensors(cfg, torch.float32, pad_idx)[name]
        rows = min(len(expected), len(tensor))
        if expected.shape[1:] != tensor.shape[1:] or not torch.allclose(tensor[:rows].float(), expected[:rows],
                                                                         atol=1e-2):
            raise BigseqError(f"HF {self.model_type} '{name}' is not the table its config computes (were the "
                              f"positions trained?); bigseq computes fixed sinusoidal positions: it cannot convert it")

    def to_hf_state_dict(self, sd: dict[str, torch.Tensor], cfg, pad_idx: int | None = None
                         ) -> dict[str, torch.Tensor]:
        sd = dict(sd)
        for alias, source in self.our_aliases(cfg).items():  # listed under both names, or under one of them
            tensor = sd.pop(alias, None)
            if tensor is not None and not torch.equal(sd.setdefault(source, tensor), tensor):
                raise BigseqError(f"model state dict: '{alias}' differs from '{source}', which this config shares")
        out: dict[str, torch.Tensor] = {}
        for ours, theirs, transform in self.groups(cfg):
            tensors = transform.to_hf(tuple(take(sd, k, "model state dict") for k in ours))
            out.update(zip(theirs, tensors))
        if sd:
            raise BigseqError(f"model state dict has keys with no HF {self.model_type} equivalent: {sorted(sd)[:5]}")
        dtype = next(iter(out.values())).dtype
        out.update(self.fixed_hf_tensors(cfg, dtype, pad_idx))
        for alias, source in self.hf_aliases(cfg).items():
            out[alias] = out[source]
        return out

    def from_hf_state_dict(self, hf_sd: dict[str, torch.Tensor], cfg, pad_idx: int | None = None
                           ) -> dict[str, torch.Tensor]:
        sd = {k: v for k, v in hf_sd.items() if not k.endswith(self.ignored_suffixes)}
        for alias in self.hf_aliases(cfg):
            sd.pop(alias, None)  # HF may or may not list the tied copy
        for name in self.fixed_hf_tensors(cfg, torch.float32, pad_idx):
            if name in sd:
                self.check_fixed(cfg, name, sd.pop(name), pad_idx)
        where = f"HF {self.model_type} state dict"
        out: dict[str, torch.Tensor] = {}
        for ours, theirs, transform in self.groups(cfg):
            out.update(zip(ours, transform.from_hf(tuple(take(sd, k, where) for k in theirs))))
        if sd:
            raise BigseqError(f"{where} has keys this config does not use: {sorted(sd)[:5]}; "
                              f"check the layer counts and the tying of input/output embeddings")
        for alias, source in self.our_aliases(cfg).items():
            out[alias] = out[source]
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
