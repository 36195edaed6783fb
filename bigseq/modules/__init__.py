"""Building blocks shared by the model families (no distributed or DeepSpeed imports here)."""

from bigseq.modules.attention import SelfAttention  # noqa: F401
from bigseq.modules.dropout import Dropout  # noqa: F401
from bigseq.modules.embeddings import LearnedPositionalEmbedding, SinusoidalPositionalEmbedding  # noqa: F401
from bigseq.modules.feedforward import ACTIVATIONS, GATED_ACTIVATIONS, FeedForward, GatedFeedForward  # noqa: F401
from bigseq.modules.init import init_params_by_name, normal, ones, zeros  # noqa: F401
from bigseq.modules.kv_cache import KVCache, LayerKVCache  # noqa: F401
from bigseq.modules.norms import RMSNorm, build_norm  # noqa: F401
from bigseq.modules.rotary import apply_rope, rope_cos_sin, rotate_half  # noqa: F401
from bigseq.modules.transformer_layer import TransformerDecoderLayer  # noqa: F401
