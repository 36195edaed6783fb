"""Model family's PipelineLayers -> a DeepSpeed PipelineModule with the criterion as its loss.

Each layer is built and then initialised from (seed, plain-model parameter
name), so a stage holding layers 3-5 gets the same tensors as the full model.
The loss is the criterion's token SUM times ``scale`` (carried with the
labels): with ``scale = micro_batches * dp_size / global_tokens_of_the_update``,
DeepSpeed's division by the micro-batch count (backward) and its mean over
data-parallel ranks (gradient all-reduce) leave the gradient of the mean loss
over the whole global batch, exactly like the non-pipeline Trainer.
"""

from __future__ import annotations

import os
import re

import torch
import torch.nn as nn
from deepspeed.pipe import LayerSpec, PipelineModule, TiedLayerSpec
from deepspeed.runtime import utils as ds_utils
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from bigseq.data.batch import LMBatch
from bigseq.errors import BigseqError
from bigseq.models.family import get_family
from bigseq.models.pipeline_layers import PipelineLayer
from bigseq.modules.init import construct_without_default_init, init_params_by_name


class _InitByName:
    """Mixin for LayerSpec: build the bigseq layer, then fill it from (seed, prefix + name)."""

    def _setup(self, layer: PipelineLayer, seed: int) -> None:
        self.layer, self.seed = layer, seed

    def build(self, log: bool = False) -> nn.Module:
        module = construct_without_default_init(self.layer.build)  # filled by name just below
        init_params_by_name(module, self.seed, self.layer.init_rules, prefix=self.layer.prefix)
        return module


class BigseqLayerSpec(_InitByName, LayerSpec):
    def __init__(self, layer: PipelineLayer, seed: int):
        LayerSpec.__init__(self, layer.cls)
        self._setup(layer, seed)


class BigseqTiedLayerSpec(_InitByName, TiedLayerSpec):
    def __init__(self, layer: PipelineLayer, seed: int):
        TiedLayerSpec.__init__(self, layer.tie_key, layer.cls, forward_fn=layer.tied_forward,
                               tied_weight_attr=[layer.tied_weight])
        self._setup(layer, seed)


class PipelineLoss:
    """loss_fn(logits_BTV, (target_BT, scale)) of the last stage; keeps the update's logged sums."""

    def __init__(self, criterion):
        self.criterion = criterion
        self.reset()

    def reset(self) -> None:
        self.loss_sum, self.nll_loss_sum = 0.0, 0.0

    def __call__(self, logits_BTV: torch.Tensor, labels) -> torch.Tensor:
        target_BT, scale = labels
        ntokens = int(target_BT.ne(self.criterion.padding_idx).sum())
        rows = target_BT.shape[0]
        sample = LMBatch(ids=torch.full((rows,), -1), tokens=target_BT, targets=target_BT, ntokens=ntokens,
                         nsentences=rows, global_ntokens=ntokens)
        loss, _, log = self.criterion(lambda **_: logits_BTV, sample)
        self.loss_sum += float(log.get("loss", 0.0))
        self.nll_loss_sum += float(log.get("nll_loss", 0.0))
        return loss * scale.to(loss.dtype)


def family_layers(cfg, task) -> list[PipelineLayer]:
    family = get_family(cfg.names["model"])
    family.check_pipeline(cfg.names["arch"])
    return family.pipeline_layers(cfg.model, task)


def _param_count(layer: PipelineLayer) -> int:
    with torch.device("meta"):  # shapes only, no memory
        return sum(p.numel() for p in layer.build().parameters() if p.requires_grad)


def plan_stages(layers: list[PipelineLayer], num_stages: int, method: str, arch: str) -> list[int]:
    """Stage boundaries DeepSpeed will use (same functions), checked so no stage is empty."""
    names = [layer.cls.__name__ for layer in layers]
    if method == "uniform":
        parts = ds_utils.partition_uniform(len(layers), num_stages)
        weights = [1] * len(layers)
    elif method == "parameters":
        weights = [_param_count(layer) for layer in layers]
        parts = ds_utils.partition_balanced(weights, num_stages)
    else:
        pattern = method.split(":", 1)[1]
        weights = [1 if re.search(pattern, n, re.IGNORECASE) else 0 for n in names]
        if not any(weights):
            raise BigseqError(f"--pipeline-partition-method {method}: no layer class of --arch {arch} matches "
                              f"'{pattern}'; its layer classes are {', '.join(dict.fromkeys(names))}")
        parts = ds_utils.partition_balanced(weights, num_stages)
    units = sum(1 for w in weights if w)
    if num_stages > units:
        what = "layers" if method != "parameters" else "layers with parameters"
        raise BigseqError(f"--pipeline-parallel-size {num_stages} is more than the {units} pipeline {what} of "
                          f"--arch {arch} ({', '.join(names)}); use at most {units} stages")
    for s in range(num_stages):
        if not any(weights[parts[s]:parts[s + 1]]):
            raise BigseqError(f"--pipeline-partition-method {method} leaves pipeline stage {s} of {num_stages} "
                              f"without layers; use fewer stages or another partition method")
    return parts


def _recompute(function, *args):
    # the plain model's recomputation (torch, non-reentrant): the first segment's integer token ids need
    # no requires_grad trick, and the RNG state is replayed, so dropout masks match
    return torch_checkpoint(function, *args, use_reentrant=False)


def checkpoint_interval(dist_cfg) -> int:
    """PipelineModule's activation_checkpoint_interval: layers per recomputed segment, 0 = off."""
    return dist_cfg.checkpoint_interval if dist_cfg.activation_checkpointing else 0


def build_pipeline_module(cfg, task, criterion, world_size: int) -> tuple[PipelineModule, PipelineLoss]:
    """Collective: every rank builds its own stage."""
    num_stages = cfg.distributed.pipeline_parallel_size
    if getattr(cfg.criterion, "fused_linear_ce", False):
        raise BigseqError("--fused-linear-ce does not work with --pipeline-parallel-size > 1 (the last stage "
                          "computes the loss from logits); drop --fused-linear-ce")
    layers = family_layers(cfg, task)
    plan_stages(layers, num_stages, cfg.distributed.pipeline_partition_method, cfg.names["arch"])
    if world_size % num_stages:
        raise BigseqError(f"--pipeline-parallel-size {num_stages} does not divide the world size {world_size}; "
                          f"launch a multiple of {num_stages} processes")
    seed = cfg.common.seed
    specs = [BigseqTiedLayerSpec(layer, seed) if layer.tie_key else BigseqLayerSpec(layer, seed) for layer in layers]
    loss = PipelineLoss(criterion)
    module = PipelineModule(layers=specs, num_stages=num_stages, loss_fn=loss,
                            partition_method=cfg.distributed.pipeline_partition_method, dynamic_shape=True,
                            activation_checkpoint_interval=checkpoint_interval(cfg.distributed),
                            activation_checkpoint_func=_recompute)
    module.bigseq_layers = layers  # the plain-model names of each layer's parameters
    return module, loss


def consolidate_checkpoint(ckpt_dir: str, layers: list[PipelineLayer]) -> dict[str, torch.Tensor]:
    """A pipeline checkpoint's per-layer files (layer_XX-model_states.pt) -> the plain model's state dict."""
    out = {}
    for idx, layer in enumerate(layers):
        path = os.path.join(ckpt_dir, f"layer_{idx:02d}-model_states.pt")
        if not os.path.exists(path):
            if layer.tied_forward is not None:
                continue  # a re-use of a tied module: saved once, by its first layer
            raise BigseqError(f"{ckpt_dir} has no {os.path.basename(path)}; the pipeline checkpoint is incomplete")
        state = torch.load(path, map_location="cpu", weights_only=False)
        out.update({layer.prefix + k: v for k, v in state.items()})
    return out


def layer_prefixes(layers: list[PipelineLayer]) -> dict:
    """What maps PipelineModule names to plain-model names, as JSON: each layer index's prefix, each tie key's."""
    return {"layers": [layer.prefix for layer in layers],
            "tied": {layer.tie_key: layer.prefix for layer in layers if layer.tie_key}}


def plain_name(name: str, prefixes: dict) -> str:
    """A PipelineModule parameter name -> the plain model's: '3.attn.q_proj.weight' -> 'layers.1.attn.q_proj.weight',
    'tied_modules.embed.tokens.weight' -> 'embed.tokens.weight' (DeepSpeed names layers by their index)."""
    head, _, rest = name.partition(".")
    if head == "tied_modules":
        key, _, rest = rest.partition(".")
        return prefixes["tied"][key] + rest
    return prefixes["layers"][int(head)] + rest
