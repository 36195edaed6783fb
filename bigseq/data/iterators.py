"""EpochBatchIterator: this rank's share of each update, epoch after epoch, resumable.

An update is ``update_freq`` consecutive global micro-batches; iterating an
epoch yields one update at a time as a list of ``update_freq`` local batches,
collated by the dataset (any ``bigseq.data.batch.Dataset``). The plan of an
epoch depends on (seed, epoch) and the batch flags only, so every rank agrees
on it, and with ``--batch-size`` it is the same on every world size (length-sorted seq2seq
data: with --max-tokens too, see batching.py). ``drop_last`` drops a partial last micro-batch
(LM blocks) and a partial last update. ``state_dict()`` records (epoch, updates done);
loading it continues with exactly the next update.
"""

from __future__ import annotations

import numpy as np

from bigseq.data import batching
from bigseq.data.batch import Dataset
from bigseq.data.batching import check_batch_args, epoch_order, plan_micro_batches, rank_slice
from bigseq.errors import BigseqError


class EpochBatchIterator:
    def __init__(self, dataset: Dataset, *, batch_size: int | None, max_tokens: int | None,
                 seed: int, dp_rank: int = 0, dp_size: int = 1, update_freq: int = 1, epoch: int = 1,
                 shuffle: bool = True, drop_last: bool = True, pad_to_length: int | None = None, name: str = "data"):
        check_batch_args(batch_size, max_tokens, dp_size, dp_rank)
        if update_freq < 1:
            raise BigseqError("--update-freq must be >= 1")
        self.dataset = dataset
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.seed, self.dp_rank, self.dp_size = seed, dp_rank, dp_size
        self.update_freq, self.shuffle, self.drop_last = update_freq, shuffle, drop_last
        self.pad_to_length, self.name = pad_to_length, name
        self.epoch = epoch
        """The current epoch (1-based); it advances when next_epoch_itr() follows a finished epoch."""
        self._position = 0
        self._started = False
        self._cached: tuple[int, list[list[np.ndarray]]] | None = None
        if self.updates_per_epoch == 0:
            raise BigseqError(
                f"the {name} split has {len(dataset)} samples, fewer than one update "
                f"(--batch-size/--max-tokens x --update-freq {update_freq}); lower those or --tokens-per-sample")

    # the plan ----------------------------------------------------------------
    def plan(self, epoch: int) -> list[list[np.ndarray]]:
        """Updates of ``epoch``, each a list of global micro-batches (arrays of sample ids)."""
        if self._cached is None or self._cached[0] != epoch:
            order = epoch_order(len(self.dataset), seed=self.seed, epoch=epoch, shuffle=self.shuffle)
            if self.dataset.sort_keys is None:
                micro = plan_micro_batches(order, self.dataset.lengths, batch_size=self.batch_size,
                                           max_tokens=self.max_tokens, dp_size=self.dp_size, drop_last=self.drop_last)
            else:
                micro = batching.plan_sorted_micro_batches(
                    order, self.dataset.sort_keys, self.dataset.lengths, batch_size=self.batch_size,
                    max_tokens=self.max_tokens, seed=self.seed, epoch=epoch, shuffle=self.shuffle)
            f = self.update_freq
            updates = [micro[i:i + f] for i in range(0, len(micro), f)]
            if updates and self.drop_last and len(updates[-1]) < f:
                updates.pop()
            self._cached = (epoch, updates)
        return self._cached[1]

    @property
    def updates_per_epoch(self) -> int:
        return len(self.plan(self.epoch))

    def __len__(self) -> int:
        return self.updates_per_epoch

    @property
    def iterations_in_epoch(self) -> int:
        """Updates of the current epoch handed out so far."""
        return self._position

    def end_of_epoch(self) -> bool:
        return self._position >= self.updates_per_epoch

    # iteration ---------------------------------------------------------------
    def next_epoch_itr(self) -> "UpdateIterator":
        """Iterator over the rest of the current epoch, or over the next one if this one is done."""
        if self._started and self.end_of_epoch():
            self.epoch += 1
            self._position = 0
        self._started = True
        return UpdateIterator(self, self.epoch)

    def local_micro_batch(self, global_ids: np.ndarray):
        """This rank's slice of a global micro-batch, padded as wide as the whole micro-batch's longest."""
        width = self.pad_to_length or self.dataset.batch_width(global_ids)
        ids = rank_slice(global_ids, self.dp_rank, self.dp_size)
        return self.dataset.collate([self.dataset[i] for i in ids], ids, width=width,
                                    global_ntokens=int(self.dataset.target_lengths[global_ids].sum()))

    # checkpointing -------------------------------------------------------------
    def state_dict(self) -> dict:
        if self._started and self.end_of_epoch():
            return {"epoch": self.epoch + 1, "iterations_in_epoch": 0}
        return {"epoch": self.epoch, "iterations_in_epoch": self._position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self._position = int(state["iterations_in_epoch"])
        self._started = False


class UpdateIterator:
    """One epoch's updates for this rank; it stops early if its owner moves to another epoch."""

    def __init__(self, owner: EpochBatchIterator, epoch: int):
        self.owner, self.epoch = owner, epoch
        self.total = len(owner.plan(epoch))

    def __iter__(self):
        return self

    def __len__(self) -> int:
        return self.total

    @property
    def n(self) -> int:
        return self.owner.iterations_in_epoch

    def has_next(self) -> bool:
        return self.owner.epoch == self.epoch and self.owner.iterations_in_epoch < self.total

    def __next__(self) -> list:
        if not self.has_next():
            raise StopIteration
        position = self.owner.iterations_in_epoch
        update = self.owner.plan(self.epoch)[position]
        self.owner._position = position + 1
        return [self.owner.local_micro_batch(ids) for ids in update]
