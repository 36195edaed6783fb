"""Model base class.

A model is built from its config and the task (vocabulary size, padding id):
``Model.build(cfg, task)``. Decoder-only models map ``src_tokens (B, T)`` to
logits ``(B, T, V)``. Weights are a function of (seed, parameter name) only,
so the same seed gives the same model whatever the pipeline split or ZeRO
partitioning (see ``bigseq.modules.init``).
"""

from __future__ import annotations

import torch.nn as nn


class BaseModel(nn.Module):
    @classmethod
    def build(cls, cfg, task):
        raise NotImplementedError

    def num_params(self) -> int:
        # a ZeRO-3 sharded parameter (deepspeed.zero.Init) keeps its full size in ds_numel
        return sum(getattr(p, "ds_numel", p.numel()) for p in self.parameters())
