"""transformer_lm: decoder-only language models, GPT-2 style and Llama style, one implementation."""

from bigseq.models.transformer_lm import architectures  # noqa: F401
from bigseq.models.transformer_lm.config import TransformerLMConfig  # noqa: F401
from bigseq.models.transformer_lm.model import TransformerLanguageModel  # noqa: F401
