"""LMBatch.sequence_slice: the T/P slice of a sequence-parallel rank, with every target kept once."""

import torch

from bigseq.data.batch import LMBatch

PAD = 1


def _batch(cu_seqlens=None, positions=None) -> LMBatch:
    # two rows of width 5; row 1 ends with two pads
    tokens = torch.tensor([[10, 11, 12, 13, 14], [20, 21, 22, PAD, PAD]])
    targets = torch.tensor([[11, 12, 13, 14, 15], [21, 22, 23, PAD, PAD]])
    return LMBatch(ids=torch.tensor([7, 8]), tokens=tokens, targets=targets, ntokens=8, nsentences=2,
                   global_ntokens=8, positions=positions, cu_seqlens=cu_seqlens)


def test_slices_concatenate_to_the_padded_batch_with_absolute_positions():
    batch = _batch()
    parts = [batch.sequence_slice(r, 2, PAD) for r in range(2)]  # width 5 -> 6: one pad column
    assert torch.equal(torch.cat([p.tokens for p in parts], 1), torch.tensor([[10, 11, 12, 13, 14, PAD],
                                                                               [20, 21, 22, PAD, PAD, PAD]]))
    assert torch.equal(torch.cat([p.targets for p in parts], 1)[:, :5], batch.targets)
    assert torch.equal(parts[1].positions, torch.tensor([[3, 4, 5], [3, 4, 5]]))
    assert [p.ntokens for p in parts] == [6, 2] and sum(p.ntokens for p in parts) == batch.ntokens
    assert [p.nsentences for p in parts] == [2, 0]  # counted once per sequence-parallel group
    assert all(p.global_ntokens == 8 and torch.equal(p.ids, batch.ids) for p in parts)


def test_document_boundaries_follow_the_padding_and_positions_continue_the_last_document():
    # row 0: documents at 0 and 3; row 1: one document (flattened starts 0, 3, 5; end 10)
    batch = _batch(cu_seqlens=torch.tensor([0, 3, 5, 10], dtype=torch.int32),
                   positions=torch.tensor([[0, 1, 2, 0, 1], [0, 1, 2, 3, 4]]))
    part = batch.sequence_slice(1, 2, PAD)
    assert part.cu_seqlens.dtype == torch.int32
    assert part.cu_seqlens.tolist() == [0, 3, 6, 12]  # over the padded 2 x 6 rows
    assert part.positions.tolist() == [[0, 1, 2], [3, 4, 5]]
