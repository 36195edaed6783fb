"""Decoding: greedy and sampling for decoder-only LMs (KV cache); fairseq's beam search for encoder-decoders."""

from bigseq.generation.beam_search import BeamSearchGenerator, Hypothesis  # noqa: F401
from bigseq.generation.config import BeamSearchConfig, GenerationConfig  # noqa: F401
from bigseq.generation.generator import SequenceGenerator  # noqa: F401
from bigseq.generation.sampling import choose_next, top_k_filter, top_p_filter  # noqa: F401
