"""Training samples cut out of a token stream by index arithmetic (no token is loaded).

A sample is a run of consecutive stream tokens, optionally preceded by an eos:
``[eos]? + stream[start:end]``, at most ``T + 1`` tokens (T = tokens_per_sample)
so that ``source = sample[:-1]`` and ``target = sample[1:]`` are T long.

- ``none``: the stream cut into windows of T + 1 tokens overlapping by one,
  so every stream token after the first is a target exactly once.
- ``eos``: one document per sample, prefixed with eos (as fairseq does); a
  document longer than T continues in further windows.
- ``complete``: whole documents (each prefixed with eos) packed greedily into
  samples of at most T targets; only a document longer than T is split.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

BreakMode = Literal["none", "eos", "complete"]


class TokenBlocks:
    def __init__(self, tokens: np.ndarray, starts: np.ndarray, ends: np.ndarray, prefix_eos: np.ndarray, eos: int):
        self.tokens = tokens
        """The flat token stream (typically an np.memmap of a .bin file)."""
        self.starts, self.ends, self.prefix_eos = starts, ends, prefix_eos
        self.eos = eos
        self.lengths = (ends - starts + prefix_eos).astype(np.int64)
        """Tokens per sample (T + 1 at most); the source/target length is one less."""

    @classmethod
    def build(cls, tokens: np.ndarray, doc_sizes: np.ndarray, *, tokens_per_sample: int, break_mode: BreakMode,
              eos: int) -> "TokenBlocks":
        """Samples over ``tokens``, the documents of ``doc_sizes`` laid end to end."""
        if tokens_per_sample < 1:
            raise ValueError("tokens_per_sample must be >= 1")
        sizes = np.asarray(doc_sizes, dtype=np.int64)
        if break_mode == "none":
            starts, ends, prefix = _stream_windows(int(sizes.sum()), tokens_per_sample)
        elif break_mode == "eos":
            starts, ends, prefix = _document_windows(sizes, tokens_per_sample)
        elif break_mode == "complete":
            starts, ends, prefix = _packed_documents(sizes, tokens_per_sample)
        else:
            raise ValueError(f"unknown sample_break_mode {break_mode!r}")
        return cls(tokens, starts, ends, prefix, eos)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> np.ndarray:
        """Sample i as int64 tokens (length ``lengths[i]``)."""
        body = np.asarray(self.tokens[int(self.starts[i]):int(self.ends[i])], dtype=np.int64)
        if self.prefix_eos[i]:
            return np.concatenate([np.array([self.eos], dtype=np.int64), body])
        return body

    @property
    def num_targets(self) -> int:
        return int(self.lengths.sum()) - len(self)


def _stream_windows(num_tokens: int, T: int):
    count = max(0, -(-(num_tokens - 1) // T))  # ceil((N - 1) / T): windows that hold a target
    starts = np.arange(count, dtype=np.int64) * T
    ends = np.minimum(starts + T + 1, num_tokens)
    return starts, ends, np.zeros(count, dtype=bool)


def _document_pieces(sizes: np.ndarray, T: int):
    """Target ranges of at most T tokens covering every document, and whether each starts a document."""
    offsets = np.cumsum(sizes) - sizes
    pieces = -(-sizes // T)  # 0 for an empty document
    doc = np.repeat(np.arange(len(sizes)), pieces)
    first_piece = np.cumsum(pieces) - pieces
    k = np.arange(len(doc), dtype=np.int64) - np.repeat(first_piece, pieces)
    target_starts = offsets[doc] + k * T
    target_ends = offsets[doc] + np.minimum((k + 1) * T, sizes[doc])
    return target_starts, target_ends, k == 0


def _document_windows(sizes: np.ndarray, T: int):
    target_starts, target_ends, doc_start = _document_pieces(sizes, T)
    # a continuation window starts one token early: the last token of the previous window
    return target_starts - ~doc_start, target_ends, doc_start


def _packed_documents(sizes: np.ndarray, T: int):
    target_starts, target_ends, doc_start = _document_pieces(sizes, T)
    cum = np.concatenate([[0], np.cumsum(target_ends - target_starts)])
    # the sample opened by piece i takes pieces i..next_open[i]-1: as many as fit in T targets
    next_open = np.searchsorted(cum, cum[:-1] + T, side="right") - 1
    if len(next_open) == 0:
        return target_starts, target_ends, doc_start
    firsts, i = [], 0
    while i < len(next_open):
        firsts.append(i)
        i = int(next_open[i])
    firsts = np.asarray(firsts, dtype=np.int64)
    lasts = np.append(firsts[1:], len(next_open)) - 1
    starts = target_starts[firsts] - ~doc_start[firsts]
    return starts, target_ends[lasts], doc_start[firsts]
