"""Global batch plans: which samples form each micro-batch, a function of (seed, epoch) only.

``--batch-size`` and ``--max-tokens`` are GLOBAL (summed over data-parallel
ranks). A global micro-batch is cut into ``dp_size`` contiguous slices and rank
r takes slice r, so concatenating the slices of all ranks gives the micro-batch
that a single process would see.

Seq2seq data is batched as fairseq batches it: the epoch's shuffled samples are
stably sorted by length, cut by the same rules, and the micro-batches shuffled
(``plan_sorted_micro_batches``). Those micro-batches are cut without regard to
``dp_size`` (fairseq's --required-batch-size-multiple 1), so they are the same on
every world size even with --max-tokens; the rank slices then differ by at most one
sentence (a rank left without any gets a filler row that adds nothing to the loss).
"""

from __future__ import annotations

import numpy as np

from bigseq.errors import BigseqError


def check_batch_args(batch_size: int | None, max_tokens: int | None, dp_size: int, dp_rank: int) -> None:
    if batch_size is None and max_tokens is None:
        raise BigseqError("set --batch-size N or --max-tokens N (global over data-parallel ranks)")
    if (batch_size is not None and batch_size <= 0) or (max_tokens is not None and max_tokens <= 0):
        raise BigseqError("--batch-size and --max-tokens must be positive")
    if dp_size < 1 or not 0 <= dp_rank < dp_size:
        raise ValueError(f"data-parallel rank {dp_rank} is not in [0, {dp_size})")
    if batch_size is not None and batch_size % dp_size != 0:
        raise BigseqError(f"--batch-size {batch_size} is not divisible by the {dp_size} data-parallel ranks; "
                          f"use a multiple of {dp_size}")


def epoch_order(num_samples: int, *, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The sample order of an epoch: the same on every rank and for every world size."""
    if not shuffle:
        return np.arange(num_samples, dtype=np.int64)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, epoch])
    return rng.permutation(num_samples).astype(np.int64)


def plan_micro_batches(order: np.ndarray, src_lengths: np.ndarray, *, batch_size: int | None,
                       max_tokens: int | None, dp_size: int, drop_last: bool) -> list[np.ndarray]:
    """Cut ``order`` into global micro-batches of sample ids.

    With --batch-size only, every micro-batch has exactly that many samples (a
    partial one at the end is dropped when ``drop_last``). With --max-tokens,
    samples are taken in order while (count x longest source) fits, and the
    count is rounded down to a multiple of ``dp_size``; the rest opens the next one.
    """
    n = len(order)
    if max_tokens is None:
        batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        if batches and drop_last and len(batches[-1]) < batch_size:
            batches.pop()
        return batches
    limit = batch_size or n
    longest = int(src_lengths.max()) if n else 0
    if n and int((src_lengths[order] == longest).sum()) >= n - 1:
        # (nearly) equal lengths, e.g. break mode 'none': the greedy cut below gives equal batches
        fits = min(limit, max_tokens // longest)
        per = fits - fits % dp_size
        if per == 0 and fits < n:
            raise _too_small(max_tokens, longest, dp_size)
        full = max(0, -(-(n - fits) // per)) if per else 0  # batches cut before the rest fits in one
        batches = [order[i * per:(i + 1) * per] for i in range(full)]
        tail = order[full * per:]
        if drop_last:
            tail = tail[:len(tail) - len(tail) % dp_size]
        return batches + ([tail] if len(tail) else [])
    return _greedy_max_tokens(order, src_lengths, limit=limit, max_tokens=max_tokens, dp_size=dp_size,
                              drop_last=drop_last)


def plan_sorted_micro_batches(order: np.ndarray, sort_keys: tuple[np.ndarray, ...], lengths: np.ndarray, *,
                              batch_size: int | None, max_tokens: int | None, seed: int, epoch: int,
                              shuffle: bool) -> list[np.ndarray]:
    """Length-bucketed global micro-batches: ``order`` stably sorted by each key in turn (the last
    decides first, fairseq's ordered_indices), cut as ``plan_micro_batches`` cuts (--max-tokens
    counts sentences x the longest) for one rank, then shuffled as whole micro-batches when
    ``shuffle``. No sample is dropped: the last micro-batch holds the longest samples."""
    for key in sort_keys:
        order = order[np.argsort(key[order], kind="stable")]
    batches = plan_micro_batches(order, lengths, batch_size=batch_size, max_tokens=max_tokens, dp_size=1,
                                 drop_last=False)
    if not shuffle:
        return batches
    rng = np.random.default_rng([seed & 0xFFFFFFFF, epoch, 1])  # not the sample order's stream
    return [batches[i] for i in rng.permutation(len(batches))]


def _too_small(max_tokens: int, length: int, dp_size: int) -> BigseqError:
    return BigseqError(f"--max-tokens {max_tokens} holds fewer than one sample of {length} tokens per each of "
                       f"the {dp_size} data-parallel ranks; use --max-tokens >= {dp_size * length} "
                       "or a smaller --tokens-per-sample")


def _greedy_max_tokens(order: np.ndarray, src_lengths: np.ndarray, *, limit: int, max_tokens: int, dp_size: int,
                       drop_last: bool) -> list[np.ndarray]:
    n = len(order)
    lengths = src_lengths[order].tolist()
    batches, start = [], 0
    while start < n:
        pos, longest = start, 0
        while pos < n and pos - start < limit:
            new_longest = max(longest, lengths[pos])
            if (pos - start + 1) * new_longest > max_tokens:
                break
            longest, pos = new_longest, pos + 1
        count = pos - start
        if pos < n or drop_last:
            count -= count % dp_size
        if count == 0:
            if pos >= n:
                break  # fewer samples left than ranks: dropped
            raise _too_small(max_tokens, lengths[pos], dp_size)
        batches.append(order[start:start + count])
        start += count
    return batches


def rank_slice(batch: np.ndarray, dp_rank: int, dp_size: int) -> np.ndarray:
    """Contiguous slice ``dp_rank`` of ``dp_size`` (equal sizes unless the batch is a partial last one)."""
    return np.array_split(batch, dp_size)[dp_rank]
