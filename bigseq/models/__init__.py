"""Model families register themselves (and their named architectures) on import."""

from bigseq.models import transformer, transformer_lm  # noqa: F401
from bigseq.models.base import BaseModel  # noqa: F401
