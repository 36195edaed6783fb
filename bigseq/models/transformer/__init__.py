"""transformer: fairseq's encoder-decoder translation models (post-norm, pre-norm, shared embeddings)."""

from bigseq.models.transformer import architectures, family  # noqa: F401  (registration)
from bigseq.models.transformer.config import DecoderConfig, EncoderConfig, TransformerConfig  # noqa: F401
from bigseq.models.transformer.model import EncoderOut, TransformerModel  # noqa: F401
