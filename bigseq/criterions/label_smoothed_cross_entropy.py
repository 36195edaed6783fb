"""Cross entropy against a smoothed target (fairseq's label_smoothed_cross_entropy).

The target class gets probability 1 - eps and every other class eps / (V - 1);
``nll_loss`` (unsmoothed) is reported alongside for perplexity.
"""

from __future__ import annotations

from dataclasses import dataclass

from bigseq.criterions.cross_entropy import CrossEntropyConfig, CrossEntropyCriterion
from bigseq.errors import BigseqError
from bigseq.registry import register_criterion


@dataclass(kw_only=True)
class LabelSmoothedCrossEntropyConfig(CrossEntropyConfig):
    label_smoothing: float = 0.0
    """Epsilon for label smoothing (0: none); the target keeps 1 - eps, the rest share eps."""


@register_criterion("label_smoothed_cross_entropy", LabelSmoothedCrossEntropyConfig)
class LabelSmoothedCrossEntropyCriterion(CrossEntropyCriterion):
    def __init__(self, cfg, task):
        super().__init__(cfg, task)
        if not 0.0 <= cfg.label_smoothing < 1.0:
            raise BigseqError(f"--label-smoothing {cfg.label_smoothing}: must be in [0, 1); 0.1 is usual")
        self.label_smoothing = cfg.label_smoothing
