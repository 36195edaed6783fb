"""Generation options (fairseq flag names where fairseq has one)."""

from __future__ import annotations

from dataclasses import dataclass

from bigseq.errors import BigseqError


@dataclass(kw_only=True)
class GenerationConfig:
    max_new_tokens: int = 64
    """Generate at most this many tokens after each prompt."""
    sampling: bool = False
    """Sample the next token instead of taking the most likely one (greedy)."""
    sampling_topk: int = -1
    """Sample only among the k most likely tokens (-1: off)."""
    sampling_topp: float = -1.0
    """Sample only from the smallest set of tokens whose probability sums to p (-1: off)."""
    temperature: float = 1.0
    """Divide the logits by this before sampling (< 1: sharper, > 1: flatter)."""
    stop_at_eos: bool = True
    """End a sequence when it generates the end-of-sentence token."""

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise BigseqError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise BigseqError(f"--temperature must be > 0, got {self.temperature}; for greedy decoding drop --sampling")
        if self.sampling_topp > 1:
            raise BigseqError(f"--sampling-topp must be in (0, 1] (or -1: off), got {self.sampling_topp}")


@dataclass(kw_only=True)
class BeamSearchConfig:
    """fairseq's generation flags for encoder-decoder models (same names, same defaults)."""

    beam: int = 5
    """Hypotheses kept per sentence (with --sampling: samples drawn per sentence)."""
    nbest: int = 1
    """Print this many of the best finished hypotheses per sentence (<= --beam)."""
    max_len_a: float = 0.0
    """Generate at most a*x + b tokens, x the source length (the padded batch width)."""
    max_len_b: int = 200
    """Generate at most a*x + b tokens, x the source length (the padded batch width)."""
    min_len: int = 1
    """End-of-sentence is blocked before this many tokens are generated."""
    match_source_len: bool = False
    """Hypotheses are exactly as long as the source (eos excluded)."""
    lenpen: float = 1.0
    """Length penalty: a hypothesis scores its log-probability / length**lenpen (< 1 favours shorter)."""
    unnormalized: bool = False
    """Score hypotheses by their log-probability alone (no length normalization)."""
    unkpen: float = 0.0
    """Subtract this from the unknown word's log-probability (> 0: fewer <unk>)."""
    no_repeat_ngram_size: int = 0
    """Never generate an n-gram of this size twice in one hypothesis (0: off)."""
    prefix_size: int = 0
    """Force the first N tokens of each hypothesis to the reference's."""
    sampling: bool = False
    """Sample the next token instead of beam search; --beam samples per sentence."""
    sampling_topk: int = -1
    """Sample only among the k most likely tokens (-1: off)."""
    sampling_topp: float = -1.0
    """Sample only from the smallest set of tokens whose probability sums to p (-1: off)."""
    temperature: float = 1.0
    """Divide the logits by this before the softmax."""

    def __post_init__(self):
        if self.beam < 1:
            raise BigseqError(f"--beam must be >= 1, got {self.beam}")
        if not 1 <= self.nbest <= self.beam:
            raise BigseqError(f"--nbest {self.nbest} must be between 1 and --beam {self.beam}: "
                              "beam search finishes only --beam hypotheses per sentence; raise --beam")
        if self.min_len < 0 or self.max_len_b < 0 or self.max_len_a < 0:
            raise BigseqError("--min-len, --max-len-a and --max-len-b must be >= 0")
        if self.temperature <= 0:
            raise BigseqError(f"--temperature must be > 0, got {self.temperature}")
        if self.sampling_topp > 1:
            raise BigseqError(f"--sampling-topp must be in (0, 1] (or -1: off), got {self.sampling_topp}")
        if self.no_repeat_ngram_size < 0 or self.prefix_size < 0:
            raise BigseqError("--no-repeat-ngram-size and --prefix-size must be >= 0")
