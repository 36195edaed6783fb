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
