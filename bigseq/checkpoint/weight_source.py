"""Pretrained weights read group by group, and loaded into a training engine without ever holding the whole model.

A ``WeightSource`` names its groups of our tensors up front (from the model config and the folder's
index, without reading any data), then reads one group when asked: an HF folder's group is what one
adapter mapping converts (Phi-3's fused qkv gives three of ours at once), a consolidated folder's
group is one tensor. ``load_into_engine`` walks the groups:

- ZeRO-3 (parameters partitioned across ranks): rank 0 reads a group, every rank gathers just those
  parameters, rank 0 copies, and DeepSpeed re-partitions on leaving the gather. No rank holds more
  than one group beyond its own partition; the other ranks read nothing.
- ZeRO 0-2 (every rank holds the whole model anyway): each rank copies group by group into its
  parameters; the state dict is never built.
- Pipeline stages: each stage reads only the groups of its own layers.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from bigseq.checkpoint.hf_read import TensorReader
from bigseq.errors import BigseqError


class WeightSource:
    """Groups of our parameter names and a reader of one group: ``read(i)`` -> {our name: tensor}."""

    def __init__(self, folder: str, groups: list[tuple[str, ...]], needs: list[tuple[str, ...]],
                 convert: Callable[[int, tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]):
        """needs[i]: the folder's tensor names group i is made of; convert(i, tensors) -> our group i."""
        self.folder = folder
        self.groups = groups
        self._needs = needs
        self._convert = convert
        self._reader: TensorReader | None = None

    def check_present(self) -> None:
        """Every tensor the groups need is in the folder's index (no data read)."""
        have = set(self._open().names())
        missing = [n for names in self._needs for n in names if n not in have]
        if missing:
            raise BigseqError(f"{self.folder} has no '{missing[0]}' (and {len(missing) - 1} more missing); the "
                              f"folder does not match its config.json: save or convert it again")

    def read(self, index: int) -> dict[str, torch.Tensor]:
        reader = self._open()
        tensors = self._convert(index, tuple(reader.get(n) for n in self._needs[index]))
        return dict(zip(self.groups[index], tensors))

    def names(self) -> list[str]:
        return [n for g in self.groups for n in g]

    def _open(self) -> TensorReader:
        if self._reader is None:
            self._reader = TensorReader(self.folder)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.release()
        self._reader = None


def hf_source(folder: str, adapter, model_cfg) -> WeightSource:
    """An HF folder through its model type's adapter (the key map's groups, in checkpoint order)."""
    groups = list(adapter.groups(model_cfg))
    return WeightSource(folder, [ours for ours, _, _ in groups], [theirs for _, theirs, _ in groups],
                        lambda i, tensors: groups[i][2].from_hf(tensors))


def consolidated_source(folder: str) -> WeightSource:
    """A consolidated folder: our names already, one tensor per group."""
    with TensorReader(folder) as reader:
        names = reader.names()
    return WeightSource(folder, [(n,) for n in names], [(n,) for n in names], lambda i, tensors: tensors)


def load_into_engine(trainer, source: WeightSource, where: str) -> int:
    """The source's weights into the engine's model (or this rank's pipeline stage); -> tensors loaded here."""
    from bigseq.checkpoint.pipeline import run_pipeline_size
    source.check_present()
    try:
        if run_pipeline_size(trainer) > 1:
            return _load_stage(trainer, source, where)
        params = dict(trainer.engine.module.named_parameters())
        _check_names(set(params), set(source.names()), where)
        if trainer.engine.zero_optimization_stage() == 3:
            return _load_partitioned(trainer, source, params, where)
        return _load_replicated(source, params, where)
    finally:
        source.close()


def _check_names(model: set[str], source: set[str], where: str) -> None:
    missing, unexpected = sorted(model - source), sorted(source - model)
    if missing or unexpected:
        raise BigseqError(f"{where} does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]}); "
                          f"use the --arch it was trained or converted with")


def _copy(param: torch.nn.Parameter, tensor: torch.Tensor, name: str, where: str) -> None:
    if tuple(param.shape) != tuple(tensor.shape):
        raise BigseqError(f"{where}: '{name}' has shape {tuple(tensor.shape)}, the model's is {tuple(param.shape)}; "
                          f"use the --arch it was trained or converted with")
    with torch.no_grad():
        param.copy_(tensor)


def _load_replicated(source: WeightSource, params: dict, where: str) -> int:
    for i in range(len(source.groups)):
        for name, tensor in source.read(i).items():
            _copy(params[name], tensor, name, where)
    return len(params)


def _load_partitioned(trainer, source: WeightSource, params: dict, where: str) -> int:
    """ZeRO-3: rank 0 reads and copies each group into the gathered parameters; leaving the gather broadcasts
    rank 0's values and re-partitions them. Every rank walks the same groups (the gathers are collective), so
    an error on rank 0 is held until the end and then raised on every rank."""
    import deepspeed
    import torch.distributed as dist
    reader = dist.get_rank() == 0
    error: BigseqError | None = None
    for i, group in enumerate(source.groups):
        tensors = {}
        if reader and error is None:
            try:
                tensors = source.read(i)
            except BigseqError as e:
                error = e
        with deepspeed.zero.GatheredParameters([params[n] for n in group], modifier_rank=0):
            if reader and error is None:
                try:
                    for name, tensor in tensors.items():
                        _copy(params[name], tensor, name, where)
                except BigseqError as e:
                    error = e
        del tensors
    failed = torch.tensor([0 if error is None else 1], dtype=torch.int64)
    dist.broadcast(failed, src=0)
    if failed.item():
        raise error or BigseqError(f"{where}: rank 0 could not load the weights; see its error above")
    return len(params) if reader else 0


def _load_stage(trainer, source: WeightSource, where: str) -> int:
    """Pipeline: this stage's parameters from the groups holding any of them (plain-model names)."""
    from bigseq.distributed.pipeline import layer_prefixes, plain_name
    module = trainer.engine.module
    prefixes = layer_prefixes(module.bigseq_layers)
    wanted = {plain_name(name, prefixes): name for name in module.state_dict()}
    missing = sorted(set(wanted) - set(source.names()))
    if missing:
        raise BigseqError(f"{where} does not match the model (missing {missing[:3]}); use the --arch it was "
                          f"trained or converted with")
    state = {}
    for i in _groups_holding(source, set(wanted)):
        state.update({wanted[n]: t for n, t in source.read(i).items() if n in wanted})
    module.load_state_dict(state, strict=True)
    return len(state)


def _groups_holding(source: WeightSource, names: set[str]) -> Iterator[int]:
    return (i for i, group in enumerate(source.groups) if names.intersection(group))
