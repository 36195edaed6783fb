"""Criterions register themselves on import."""

from bigseq.criterions import cross_entropy, label_smoothed_cross_entropy  # noqa: F401
from bigseq.criterions.base import BaseCriterion  # noqa: F401
