"""LMDataset: TokenBlocks as the dataset protocol of EpochBatchIterator (next-token prediction)."""

from __future__ import annotations

import numpy as np
import torch

from bigseq.data.batch import LMBatch
from bigseq.data.token_blocks import TokenBlocks


class LMDataset:
    def __init__(self, blocks: TokenBlocks, pad_idx: int):
        self.blocks, self.pad_idx = blocks, pad_idx
        self.lengths = blocks.lengths - 1  # source = sample[:-1], target = sample[1:]
        self.target_lengths = self.lengths
        self.sort_keys = None  # blocks are batched in shuffled order

    def batch_width(self, ids: np.ndarray) -> int:
        return int(self.lengths[ids].max())

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.blocks[index]

    def collate(self, samples: list[np.ndarray], ids: np.ndarray, *, width: int, global_ntokens: int) -> LMBatch:
        return collate_lm(samples, ids, pad_idx=self.pad_idx, width=width, global_ntokens=global_ntokens)


def collate_lm(samples: list[np.ndarray], ids: np.ndarray, *, pad_idx: int, width: int,
               global_ntokens: int) -> LMBatch:
    """Samples of up to width + 1 tokens -> padded source/target (B, width), right padded.

    An empty slice (a rank without samples in a partial last batch) becomes one all-pad row
    with ``nsentences = ntokens = 0`` so every rank still runs the same number of steps.
    """
    rows = max(len(samples), 1)
    src_BT = np.full((rows, width), pad_idx, dtype=np.int64)
    tgt_BT = np.full((rows, width), pad_idx, dtype=np.int64)
    ntokens = 0
    for i, tokens in enumerate(samples):
        n = len(tokens) - 1
        src_BT[i, :n] = tokens[:-1]
        tgt_BT[i, :n] = tokens[1:]
        ntokens += n
    id_B = torch.from_numpy(np.asarray(ids, dtype=np.int64)) if len(samples) else torch.tensor([-1])
    return LMBatch(ids=id_B, tokens=torch.from_numpy(src_BT), targets=torch.from_numpy(tgt_BT), ntokens=ntokens,
                   nsentences=len(samples), global_ntokens=global_ntokens)
