"""LMDataset: TokenBlocks as the dataset protocol of EpochBatchIterator (next-token prediction).

With ``document_mask`` the collate also marks where the documents of a packed row
begin (Megatron's --reset-position-ids --reset-attention-mask): at each eos of the
source, which under bigseq's convention (every document ends with eos) is the
"BOS" of the next document, and at each row start (a window cut mid-document, or
the continuation of a long one). Positions restart there and ``cu_seqlens`` cuts
the flattened batch at each start, so attention stays inside a document.
"""

from __future__ import annotations

import numpy as np
import torch

from bigseq.data.batch import LMBatch
from bigseq.data.token_blocks import TokenBlocks


class LMDataset:
    def __init__(self, blocks: TokenBlocks, pad_idx: int, *, document_mask: bool = False):
        self.blocks, self.pad_idx = blocks, pad_idx
        self.document_eos = blocks.eos if document_mask else None
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
        return collate_lm(samples, ids, pad_idx=self.pad_idx, width=width, global_ntokens=global_ntokens,
                          document_eos=self.document_eos)


def collate_lm(samples: list[np.ndarray], ids: np.ndarray, *, pad_idx: int, width: int,
               global_ntokens: int, document_eos: int | None = None) -> LMBatch:
    """Samples of up to width + 1 tokens -> padded source/target (B, width), right padded.

    An empty slice (a rank without samples in a partial last batch) becomes one all-pad row
    with ``nsentences = ntokens = 0`` so every rank still runs the same number of steps.
    document_eos: the eos id, to give the batch per-document positions and cu_seqlens.
    """
    rows = max(len(samples), 1)
    src_BT = np.full((rows, width), pad_idx, dtype=np.int64)
    tgt_BT = np.full((rows, width), pad_idx, dtype=np.int64)
    len_B = np.zeros(rows, dtype=np.int64)
    for i, tokens in enumerate(samples):
        n = len_B[i] = len(tokens) - 1
        src_BT[i, :n] = tokens[:-1]
        tgt_BT[i, :n] = tokens[1:]
    id_B = torch.from_numpy(np.asarray(ids, dtype=np.int64)) if len(samples) else torch.tensor([-1])
    batch = LMBatch(ids=id_B, tokens=torch.from_numpy(src_BT), targets=torch.from_numpy(tgt_BT),
                    ntokens=int(len_B.sum()), nsentences=len(samples), global_ntokens=global_ntokens)
    if document_eos is not None:
        positions_BT, cu_seqlens = document_layout(src_BT, len_B, document_eos)
        batch.positions, batch.cu_seqlens = torch.from_numpy(positions_BT), torch.from_numpy(cu_seqlens)
    return batch


def document_layout(src_BT: np.ndarray, len_B: np.ndarray, eos: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions (B, T) int64, cu_seqlens (D + 1,) int32 over the flattened B * T) of the documents.

    A row's padding belongs to its last document: padding comes after every real token, so under
    the causal mask it sees that document but nothing sees it, and no extra segment is made.
    """
    B, T = src_BT.shape
    t_BT = np.broadcast_to(np.arange(T), (B, T))
    starts_BT = (src_BT == eos) & (t_BT < len_B[:, None])
    starts_BT[:, 0] = True
    last_start_BT = np.maximum.accumulate(np.where(starts_BT, t_BT, 0), axis=1)
    cu_seqlens = np.append(np.flatnonzero(starts_BT), B * T).astype(np.int32)
    return (t_BT - last_start_BT).astype(np.int64), cu_seqlens
