"""Decoding for decoder-only language models: greedy and sampling (temperature, top-k, top-p) with a KV cache."""

from bigseq.generation.config import GenerationConfig  # noqa: F401
from bigseq.generation.generator import SequenceGenerator  # noqa: F401
from bigseq.generation.sampling import choose_next, top_k_filter, top_p_filter  # noqa: F401
