"""LanguagePairDataset: aligned source/target mmap datasets as the dataset protocol of EpochBatchIterator.

The semantics are fairseq's ``LanguagePairDataset``: every line ends with eos (no bos),
sources are left padded by default, ``prev_output_tokens`` is the target with its eos
moved to the front, ``num_tokens = max(source, target)`` is what --max-tokens counts and
batches are length-sorted (target length, then source length decides first). Unlike
fairseq's collate, rows are NOT re-sorted by source length: they stay in the plan's
order, so the rank slices of a global micro-batch concatenate to the batch one process
sees; ``ids`` carries the line numbers (fairseq's ``id``). Models need no sorted rows.
"""

from __future__ import annotations

import numpy as np
import torch

from bigseq.data.batch import Seq2SeqBatch
from bigseq.data.indexed_dataset import MMapIndexedDataset


def bucketed(sizes: np.ndarray, num_buckets: int) -> np.ndarray:
    """fairseq's get_buckets + get_bucketed_sizes: each size rounded up to the next of N length quantiles."""
    buckets = np.unique(np.percentile(sizes, np.linspace(0, 100, num_buckets + 1), method="lower")[1:])
    return buckets[np.searchsorted(buckets, sizes, side="left")].astype(np.int64)


def oversized(src_sizes: np.ndarray, tgt_sizes: np.ndarray, max_source: int, max_target: int) -> np.ndarray:
    """Line numbers of pairs longer than the model's positions (eos counts)."""
    return np.flatnonzero((src_sizes > max_source) | (tgt_sizes > max_target))


class LanguagePairDataset:
    def __init__(self, src: MMapIndexedDataset, tgt: MMapIndexedDataset, *, pad_idx: int, eos_idx: int,
                 left_pad_source: bool = True, left_pad_target: bool = False, keep: np.ndarray | None = None,
                 truncate_source_to: int | None = None, num_buckets: int = 0):
        """``keep``: the line numbers to use (None: all); ``truncate_source_to``: longer sources keep their
        first N-1 tokens and end with eos (--truncate-source); ``num_buckets`` > 0: pad widths to that
        many length quantiles (--num-batch-buckets)."""
        if len(src) != len(tgt):
            raise ValueError(f"{src.prefix} has {len(src)} lines, {tgt.prefix} {len(tgt)}")
        self.src, self.tgt = src, tgt
        self.pad_idx, self.eos_idx = pad_idx, eos_idx
        self.left_pad_source, self.left_pad_target = left_pad_source, left_pad_target
        self.line_ids = np.arange(len(src), dtype=np.int64) if keep is None else np.asarray(keep, dtype=np.int64)
        self.src_sizes = src.sizes[self.line_ids].astype(np.int64)
        if truncate_source_to is not None:
            self.src_sizes = np.minimum(self.src_sizes, truncate_source_to)
        self.tgt_sizes = tgt.sizes[self.line_ids].astype(np.int64)
        self.src_widths, self.tgt_widths = self.src_sizes, self.tgt_sizes
        if num_buckets > 0 and len(self.line_ids):
            self.src_widths = bucketed(self.src_sizes, num_buckets)
            self.tgt_widths = bucketed(self.tgt_sizes, num_buckets)
        self.lengths = np.maximum(self.src_widths, self.tgt_widths)
        self.target_lengths = self.tgt_sizes
        # fairseq sorts by target, then by source length; with buckets by the bucketed num_tokens
        self.sort_keys = (self.lengths,) if num_buckets > 0 else (self.tgt_sizes, self.src_sizes)

    def __len__(self) -> int:
        return len(self.line_ids)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        line = int(self.line_ids[index])
        src = self.src.get(line)
        if len(src) > self.src_sizes[index]:  # truncated: fairseq strips eos, truncates, appends eos
            src = np.append(src[:self.src_sizes[index] - 1], self.eos_idx)
        return src, self.tgt.get(line)

    def batch_width(self, ids: np.ndarray) -> tuple[int, int]:
        """(source width, target width) of a global micro-batch."""
        return int(self.src_widths[ids].max()), int(self.tgt_widths[ids].max())

    def collate(self, samples: list[tuple[np.ndarray, np.ndarray]], ids: np.ndarray, *, width: tuple[int, int],
                global_ntokens: int) -> Seq2SeqBatch:
        """This rank's pairs padded to the global micro-batch's widths.

        A rank without pairs (a partial last validation batch) gets one filler row, a source
        of just eos and a decoder input of just eos, so no attention row is fully masked;
        its targets are all pad, so it adds nothing to the loss.
        """
        S, T = width
        rows = max(len(samples), 1)
        src_BS = np.full((rows, S), self.pad_idx, dtype=np.int64)
        prev_BT = np.full((rows, T), self.pad_idx, dtype=np.int64)
        tgt_BT = np.full((rows, T), self.pad_idx, dtype=np.int64)
        src_lengths = np.zeros(rows, dtype=np.int64)
        pairs = samples or [(np.array([self.eos_idx]), np.array([], dtype=np.int64))]
        for r, (src, tgt) in enumerate(pairs):
            n, m = len(src), len(tgt)
            src_BS[r, slice(S - n, S) if self.left_pad_source else slice(0, n)] = src
            src_lengths[r] = n
            prev = np.concatenate([[self.eos_idx], tgt[:-1]]) if m else np.array([self.eos_idx])
            t = slice(T - len(prev), T) if self.left_pad_target else slice(0, len(prev))
            prev_BT[r, t] = prev
            if m:
                tgt_BT[r, t] = tgt
        ntokens = sum(len(tgt) for _, tgt in samples)
        id_B = torch.from_numpy(self.line_ids[np.asarray(ids, dtype=np.int64)]) if samples else torch.tensor([-1])
        return Seq2SeqBatch(ids=id_B, src_tokens=torch.from_numpy(src_BS), src_lengths=torch.from_numpy(src_lengths),
                            prev_output_tokens=torch.from_numpy(prev_BT), targets=torch.from_numpy(tgt_BT),
                            ntokens=ntokens, nsentences=len(samples), global_ntokens=global_ntokens)
