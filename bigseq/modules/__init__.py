"""Building blocks shared by the model families (no distributed or DeepSpeed imports here)."""

from bigseq.modules.attention import SelfAttention, padding_mask_from_lengths  # noqa: F401
from bigseq.modules.cross_attention import CrossAttention  # noqa: F401
from bigseq.modules.dropout import Dropout  # noqa: F401
from bigseq.modules.embeddings import LearnedPositionalEmbedding, SinusoidalPositionalEmbedding  # noqa: F401
from bigseq.modules.feedforward import ACTIVATIONS, GATED_ACTIVATIONS, FeedForward, GatedFeedForward  # noqa: F401
from bigseq.modules.init import init_params_by_name, normal, ones, zeros  # noqa: F401
from bigseq.modules.kv_cache import KVCache, LayerKVCache, StaticKVCache  # noqa: F401
from bigseq.modules.norms import RMSNorm, build_norm  # noqa: F401
from bigseq.modules.rotary import (  # noqa: F401
    RopeConfig,
    RopeCosSin,
    RotaryEmbedding,
    apply_rope,
    rope_cos_sin,
    rotate_half,
)
from bigseq.modules.transformer_layer import TransformerDecoderLayer, TransformerEncoderLayer  # noqa: F401
