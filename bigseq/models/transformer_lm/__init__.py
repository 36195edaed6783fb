"""transformer_lm: decoder-only language models, GPT-2 style and Llama style, one implementation."""

from bigseq.models.transformer_lm import architectures, family  # noqa: F401  (registration)
from bigseq.models.transformer_lm.config import TransformerLMConfig  # noqa: F401
from bigseq.models.transformer_lm.model import TransformerLanguageModel  # noqa: F401
