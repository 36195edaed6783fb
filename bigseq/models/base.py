"""Model base class.

A model is built from its config and the task (vocabulary size, padding id):
``Model.build(cfg, task)``. Decoder-only models map ``src_tokens (B, T)`` to
logits ``(B, T, V)``. Weights are a function of (seed, parameter name) only,
so the same seed gives the same model whatever the pipeline split or ZeRO
partitioning (see ``bigseq.modules.init``).
"""

from __future__ import annotations

import torch.nn as nn

from bigseq.distributed import zero3


class BaseModel(nn.Module):
    @classmethod
    def build(cls, cfg, task):
        raise NotImplementedError

    def num_params(self) -> int:
        return sum(zero3.full_numel(p) for p in self.parameters())
