"""Task: owns the data and the vocabulary, builds the model and the criterion.

A task's ``train_step``/``valid_step`` return ``(loss, sample_size,
logging_output)``; the Trainer handles everything distributed around them.
"""

from __future__ import annotations

import torch

from bigseq import registry
from bigseq.models.family import get_family


class Task:
    def __init__(self, cfg):
        self.cfg = cfg

    @classmethod
    def build(cls, cfg):
        return cls(cfg)

    # vocabulary -------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    @property
    def pad_idx(self) -> int:
        raise NotImplementedError

    @property
    def eos_idx(self) -> int:
        raise NotImplementedError

    @property
    def sequence_length(self) -> int:
        """Tokens per training sample, for the FLOPs estimate (0: samples have no fixed length)."""
        return 0

    # components -------------------------------------------------------------
    def build_model(self, model_name: str, model_cfg, seed: int = 1):
        """The model, every weight a function of (seed, parameter name): built by its family."""
        return get_family(model_name).build(model_cfg, self, seed)

    def build_criterion(self, criterion_name: str, criterion_cfg):
        return registry.CRITERION_REGISTRY.build(criterion_name, criterion_cfg, self)

    # data -------------------------------------------------------------------
    def load_dataset(self, split: str) -> None:
        raise NotImplementedError

    def get_batch_iterator(self, split: str, *, batch_size, max_tokens, seed: int, dp_rank: int, dp_size: int):
        raise NotImplementedError

    # steps ------------------------------------------------------------------
    def train_step(self, sample, model, criterion):
        model.train()
        return criterion(model, sample)

    @torch.no_grad()
    def valid_step(self, sample, model, criterion):
        model.eval()
        return criterion(model, sample)

    @property
    def valid_sum_keys(self) -> tuple[str, ...]:
        """Logging outputs of valid_step beyond the criterion's, summed over batches and ranks."""
        return ()

    def valid_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """Logged validation values computed from the summed valid_sum_keys (e.g. corpus BLEU)."""
        return {}


def setup_task(name: str, cfg) -> Task:
    return registry.TASK_REGISTRY.build(name, cfg)
