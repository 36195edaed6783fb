"""Typed batches and the dataset protocol that EpochBatchIterator batches.

A batch is this rank's slice of one global micro-batch. ``global_ntokens`` counts
the targets of the whole global micro-batch (every rank's slice), so the trainer
can scale each loss to the mean over the global batch without communication.
Legend: B rows, T time (S: source time of a seq2seq batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch


@dataclass
class LMBatch:
    ids: torch.Tensor
    """(B,) sample ids; -1 marks the one all-pad row of a rank left without samples."""
    tokens: torch.Tensor
    """(B, T) input tokens, right padded."""
    targets: torch.Tensor
    """(B, T) the next token of each input position; pad where there is nothing to predict."""
    ntokens: int
    """Non-pad targets of this slice."""
    nsentences: int
    """Samples in this slice (0 for the all-pad row)."""
    global_ntokens: int
    """Non-pad targets of the global micro-batch, all ranks' slices together."""
    positions: torch.Tensor | None = None
    """(B, T) position of each token inside its document; None: 0..T-1 on every row."""
    cu_seqlens: torch.Tensor | None = None
    """(D + 1,) int32 document starts over the flattened B * T tokens, then B * T; None: one per row."""

    @property
    def net_input(self) -> dict[str, Any]:
        """The model's keyword inputs."""
        out: dict[str, Any] = {"src_tokens": self.tokens}
        if self.positions is not None:
            out["positions"] = self.positions
        if self.cu_seqlens is not None:
            out["cu_seqlens"] = self.cu_seqlens
        return out

    def sequence_slice(self, rank: int, size: int, pad_idx: int) -> "LMBatch":
        """Slice ``rank`` of ``size`` along T (sequence parallelism), rows padded to a multiple of ``size``.

        Tokens and targets are cut at the same columns: a target is the next token of the whole row,
        so none is lost at a slice boundary. Positions are made explicit (the slice of rank r starts
        at r * T / size), and cu_seqlens stay over the whole (padded) rows, as the attention sees them
        after its all-to-all. ``ntokens`` counts this slice's targets; the sentences are counted once,
        on rank 0, so summed logging stays right; ``global_ntokens`` is unchanged.
        """
        B, T = self.tokens.shape
        width = -(-T // size) * size
        tokens, targets, positions = self.tokens, self.targets, self.positions
        if positions is None:
            positions = torch.arange(T, device=tokens.device).expand(B, T)
        cu_seqlens = self.cu_seqlens
        if width != T:  # padding joins each row's last document, after all its tokens
            extra = width - T
            tokens = torch.nn.functional.pad(tokens, (0, extra), value=pad_idx)
            targets = torch.nn.functional.pad(targets, (0, extra), value=pad_idx)
            last_BT = positions[:, -1:] + torch.arange(1, extra + 1, device=positions.device)
            positions = torch.cat([positions, last_BT], dim=1)
            if cu_seqlens is not None:
                starts = cu_seqlens[:-1].long()
                starts = starts // T * width + starts % T
                cu_seqlens = torch.cat([starts, starts.new_tensor([B * width])]).to(self.cu_seqlens.dtype)
        cols = slice(rank * width // size, (rank + 1) * width // size)
        targets = targets[:, cols].contiguous()
        return LMBatch(ids=self.ids, tokens=tokens[:, cols].contiguous(), targets=targets,
                       ntokens=int((targets != pad_idx).sum()), nsentences=self.nsentences if rank == 0 else 0,
                       global_ntokens=self.global_ntokens, positions=positions[:, cols].contiguous(),
                       cu_seqlens=cu_seqlens)


@dataclass
class Seq2SeqBatch:
    """fairseq's translation sample: eos ends every line, decoding starts from eos (no bos)."""

    ids: torch.Tensor
    """(B,) line numbers in the split; -1 marks the one filler row of a rank left without samples."""
    src_tokens: torch.Tensor
    """(B, S) source tokens, each ending with eos; left padded unless --no-left-pad-source."""
    src_lengths: torch.Tensor
    """(B,) non-pad source tokens per row."""
    prev_output_tokens: torch.Tensor
    """(B, T) the decoder's input: the target shifted right, eos moved to the front (teacher forcing)."""
    targets: torch.Tensor
    """(B, T) target tokens ending with eos, padded with pad (right unless --left-pad-target)."""
    ntokens: int
    """Non-pad targets of this slice."""
    nsentences: int
    """Sentence pairs in this slice (0 for the filler row)."""
    global_ntokens: int
    """Non-pad targets of the global micro-batch, all ranks' slices together."""

    @property
    def net_input(self) -> dict[str, Any]:
        """The model's keyword inputs (fairseq's net_input)."""
        return {"src_tokens": self.src_tokens, "src_lengths": self.src_lengths,
                "prev_output_tokens": self.prev_output_tokens}


class Dataset(Protocol):
    """What EpochBatchIterator batches: sized samples that collate into a typed batch."""

    lengths: np.ndarray
    """Padded width of each sample in a batch (what --max-tokens counts)."""
    target_lengths: np.ndarray
    """Targets each sample contributes to the loss (what global_ntokens sums)."""
    sort_keys: tuple[np.ndarray, ...] | None
    """None: micro-batches take samples in the epoch's shuffled order (LM blocks). Else the shuffled
    samples are stably sorted by each key in turn (the last key decides first), cut into
    micro-batches and the micro-batches shuffled: fairseq's length-bucketed batches (seq2seq)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...

    def batch_width(self, ids: np.ndarray) -> Any:
        """The padded width(s) of the global micro-batch ``ids``, handed to ``collate`` as ``width``."""
        ...

    def collate(self, samples: list, ids: np.ndarray, *, width: Any, global_ntokens: int) -> Any:
        """This rank's samples -> one batch padded to ``width``; no samples -> one all-pad row."""
        ...
