"""Built-in optimizers: adamw, adam, sgd, adafactor (torch implementations)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

from bigseq.errors import BigseqError
from bigseq.optim.base import BaseOptimizer, fast_impl_kwargs, materialize_params
from bigseq.registry import OPTIMIZER_REGISTRY, register_optimizer


def _betas(cfg) -> tuple[float, float]:
    if len(cfg.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.adam_betas):
        raise BigseqError(f"--adam-betas {' '.join(map(str, cfg.adam_betas))}: give two numbers in [0, 1), "
                          "e.g. --adam-betas 0.9 0.98")
    return float(cfg.adam_betas[0]), float(cfg.adam_betas[1])


@dataclass(kw_only=True)
class AdamWConfig:
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """Adam beta1 and beta2 (e.g. --adam-betas 0.9 0.98)."""
    adam_eps: float = 1e-8
    """Adam epsilon added to the denominator."""
    weight_decay: float = 0.01
    """Decoupled weight decay (applied to the weights directly, scaled by the lr)."""


@register_optimizer("adamw", AdamWConfig)
class AdamW(BaseOptimizer):
    """Adam with decoupled weight decay (what fairseq's 'adam' computes)."""

    torch_class = torch.optim.AdamW
    adamw_mode = True

    @classmethod
    def build(cls, cfg, params: Iterable, *, lr: float) -> torch.optim.Optimizer:
        params = materialize_params(params)
        return cls.torch_class(params, lr=lr, betas=_betas(cfg), eps=cfg.adam_eps, weight_decay=cfg.weight_decay,
                               **fast_impl_kwargs(params))

    @classmethod
    def cpu_offload_kwargs(cls, cfg) -> dict[str, Any] | None:
        return {"betas": _betas(cfg), "eps": cfg.adam_eps, "weight_decay": cfg.weight_decay,
                "adamw_mode": cls.adamw_mode}


@dataclass(kw_only=True)
class AdamConfig(AdamWConfig):
    weight_decay: float = 0.0
    """L2 penalty added to the gradient (torch.optim.Adam); use --optimizer adamw for decoupled decay."""


@register_optimizer("adam", AdamConfig)
class Adam(AdamW):
    """torch.optim.Adam: weight decay is an L2 term in the gradient."""

    torch_class = torch.optim.Adam
    adamw_mode = False


@dataclass(kw_only=True)
class SGDConfig:
    momentum: float = 0.0
    """Momentum factor."""
    nesterov: bool = False
    """Use Nesterov momentum (needs --momentum > 0)."""
    weight_decay: float = 0.0
    """L2 penalty added to the gradient."""


@register_optimizer("sgd", SGDConfig)
class SGD(BaseOptimizer):
    @classmethod
    def build(cls, cfg, params: Iterable, *, lr: float) -> torch.optim.Optimizer:
        if cfg.nesterov and cfg.momentum <= 0:
            raise BigseqError("--nesterov needs --momentum > 0 (e.g. --momentum 0.9)")
        params = materialize_params(params)
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay, **fast_impl_kwargs(params))


@dataclass(kw_only=True)
class AdafactorConfig:
    decay_rate: float = -0.8
    """Exponent of the second-moment decay: beta2 at step t is 1 - t^decay_rate."""
    clip_threshold: float = 1.0
    """Clip the update's RMS to this value."""
    adafactor_eps1: float | None = None
    """Added to the second-moment estimate for stability (default: the dtype's machine epsilon)."""
    adafactor_eps2: float = 1e-3
    """Lower bound of the parameter scale, so zero-initialised weights still move."""
    weight_decay: float = 0.0
    """Decoupled weight decay."""


@register_optimizer("adafactor", AdafactorConfig)
class Adafactor(BaseOptimizer):
    """torch.optim.Adafactor: factored second moments, no first moment; --lr caps the relative step."""

    @classmethod
    def build(cls, cfg, params: Iterable, *, lr: float) -> torch.optim.Optimizer:
        if cfg.decay_rate > 0:
            raise BigseqError(f"--decay-rate {cfg.decay_rate}: must be <= 0 (-0.8 is usual)")
        return torch.optim.Adafactor(materialize_params(params), lr=lr, beta2_decay=cfg.decay_rate,
                                     eps=(cfg.adafactor_eps1, cfg.adafactor_eps2), d=cfg.clip_threshold,
                                     weight_decay=cfg.weight_decay)


def build_optimizer(name: str, cfg, params: Iterable, *, lr: float) -> torch.optim.Optimizer:
    return OPTIMIZER_REGISTRY.build(name, cfg, params, lr=lr)


def cpu_offload_kwargs(cfg, name: str | None = None) -> dict[str, Any] | None:
    """DeepSpeedCPUAdam kwargs for the optimizer whose config is ``cfg`` (or named ``name``);
    None when that optimizer cannot run offloaded."""
    if name is None:
        matches = [n for n in OPTIMIZER_REGISTRY.names() if OPTIMIZER_REGISTRY.get(n).config_cls is type(cfg)]
        if len(matches) != 1:
            return None
        name = matches[0]
    return OPTIMIZER_REGISTRY.get(name).cls.cpu_offload_kwargs(cfg)
