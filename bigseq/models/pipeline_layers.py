"""PipelineLayer: bigseq's own description of one pipeline layer (no DeepSpeed here).

A model family that supports pipeline parallelism exposes
``Model.pipeline_layers(cfg, task) -> list[PipelineLayer]``: the model as an
ordered sequence whose composition equals the plain model's forward, built
from the SAME modules. ``bigseq.distributed.pipeline`` turns the list into
DeepSpeed LayerSpec/TiedLayerSpec objects; models never import deepspeed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

from bigseq.modules.init import InitRule


@dataclass(frozen=True)
class PipelineLayer:
    cls: type[nn.Module]
    """Class of the built module (its name is what --pipeline-partition-method type:<Class> matches)."""
    build: Callable[[], nn.Module]
    """Builds the module from the model config alone (no arguments)."""
    prefix: str
    """Parameter-name prefix of this module inside the plain model, e.g. 'layers.3.'."""
    init_rules: Sequence[InitRule]
    """Init rules of the family: weights are a function of (seed, prefix + name)."""
    tie_key: Optional[str] = None
    """Layers with the same key share ONE module (and its weights) across stages."""
    tied_forward: Optional[Callable[[nn.Module, torch.Tensor], torch.Tensor]] = None
    """For a re-use of a tied module: forward(module, x) instead of module(x)."""
    tied_weight: Optional[str] = None
    """Dotted name of the tied parameter inside the module, e.g. 'tokens.weight'."""
