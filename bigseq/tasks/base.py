"""Task: owns the data and the vocabulary, builds the model and the criterion.

A task's ``train_step``/``valid_step`` return ``(loss, sample_size,
logging_output)``; the Trainer handles everything distributed around them.
"""

from __future__ import annotations

import inspect

import torch

from bigseq import registry


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

    # components -------------------------------------------------------------
    def build_model(self, model_name: str, model_cfg, seed: int | None = None):
        """The model; with `seed`, its weights from that seed: passed to a ``build`` that takes one (built
        once), else through ``reset_parameters(seed)`` after building, for models that have it."""
        if seed is None:
            return registry.MODEL_REGISTRY.build(model_name, model_cfg, self)
        builder = getattr(registry.MODEL_REGISTRY.get(model_name).cls, "build", None)
        if builder is not None and "seed" in inspect.signature(builder).parameters:
            return registry.MODEL_REGISTRY.build(model_name, model_cfg, self, seed=seed)
        model = registry.MODEL_REGISTRY.build(model_name, model_cfg, self)
        if hasattr(model, "reset_parameters"):
            model.reset_parameters(seed)
        return model

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


def setup_task(name: str, cfg) -> Task:
    return registry.TASK_REGISTRY.build(name, cfg)
