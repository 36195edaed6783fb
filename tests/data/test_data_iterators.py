"""Batch iterators: world-size-independent global order, exact resume, epoch shuffling, errors."""

import numpy as np
import pytest
import torch

from bigseq.data.iterators import EpochBatchIterator
from bigseq.data.lm_dataset import LMDataset
from bigseq.data.token_blocks import TokenBlocks
from bigseq.errors import BigseqError

PAD, EOS, T = 1, 2, 8


def make_blocks(mode="eos", num_docs=100, seed=0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 3 * T, size=num_docs)
    stream = rng.integers(4, 300, size=int(sizes.sum()))
    return TokenBlocks.build(stream, sizes, tokens_per_sample=T, break_mode=mode, eos=EOS)


def iterator(blocks, **kw):
    args = dict(batch_size=8, max_tokens=None, seed=3, dp_rank=0, dp_size=1, update_freq=2)
    args.update(kw)
    return EpochBatchIterator(LMDataset(blocks, PAD), **args)


def epoch_updates(it, limit=None):
    out = []
    for update in it.next_epoch_itr():
        out.append(update)
        if limit is not None and len(out) == limit:
            break
    return out


def concat_ranks(per_rank_samples):
    """Rank slices of one micro-batch -> the full micro-batch (what one process would see)."""
    width = per_rank_samples[0].targets.shape[1]
    assert all(s.targets.shape[1] == width for s in per_rank_samples)  # same padding on every rank
    return {"id": torch.cat([s.ids for s in per_rank_samples]),
            "src": torch.cat([s.tokens for s in per_rank_samples]),
            "target": torch.cat([s.targets for s in per_rank_samples]),
            "ntokens": sum(s.ntokens for s in per_rank_samples)}


@pytest.mark.parametrize("mode", ["none", "eos"])
def test_rank_slices_reproduce_the_single_process_batches(mode):
    blocks = make_blocks(mode)
    single = epoch_updates(iterator(blocks))
    assert len(single) > 3 and all(len(u) == 2 for u in single)
    for dp_size in (2, 4):
        ranks = [epoch_updates(iterator(blocks, dp_rank=r, dp_size=dp_size)) for r in range(dp_size)]
        assert all(len(r) == len(single) for r in ranks)
        for u, update in enumerate(single):
            for m, sample in enumerate(update):
                parts = [ranks[r][u][m] for r in range(dp_size)]
                assert all(p.nsentences == 8 // dp_size for p in parts)
                joined = concat_ranks(parts)
                assert torch.equal(joined["id"], sample.ids)
                assert torch.equal(joined["src"], sample.tokens)
                assert torch.equal(joined["target"], sample.targets)
                assert joined["ntokens"] == sample.ntokens == sample.global_ntokens
                assert all(p.global_ntokens == sample.global_ntokens for p in parts)


def test_sample_contents_and_padding():
    blocks = make_blocks("eos")
    sample = epoch_updates(iterator(blocks, update_freq=1), limit=1)[0][0]
    src, tgt = sample.tokens, sample.targets
    for row, i in enumerate(sample.ids.tolist()):
        tokens = blocks[i]
        n = len(tokens) - 1
        assert src[row, :n].tolist() == tokens[:-1].tolist() and tgt[row, :n].tolist() == tokens[1:].tolist()
        assert (src[row, n:] == PAD).all() and (tgt[row, n:] == PAD).all()
    assert sample.ntokens == int((tgt != PAD).sum()) and src.dtype == torch.int64


def test_resume_mid_epoch_continues_with_the_next_update():
    blocks = make_blocks()
    full = [[s.ids.tolist() for s in u] for u in epoch_updates(iterator(blocks, dp_rank=1, dp_size=2))]
    first = iterator(blocks, dp_rank=1, dp_size=2)
    done = epoch_updates(first, limit=3)
    state = first.state_dict()
    assert state == {"epoch": 1, "iterations_in_epoch": 3} and len(done) == 3
    resumed = iterator(blocks, dp_rank=1, dp_size=2)
    resumed.load_state_dict(state)
    itr = resumed.next_epoch_itr()
    assert resumed.iterations_in_epoch == 3 and len(itr) == len(full)
    rest = [[s.ids.tolist() for s in u] for u in itr]
    assert rest == full[3:] and resumed.end_of_epoch()
    # the checkpoint taken at the end of an epoch starts the next one
    assert resumed.state_dict() == {"epoch": 2, "iterations_in_epoch": 0}
    again = iterator(blocks, dp_rank=1, dp_size=2)
    again.load_state_dict(resumed.state_dict())
    next_epoch = [[s.ids.tolist() for s in u] for u in epoch_updates(again)]
    assert again.epoch == 2 and next_epoch != full
    fresh = iterator(blocks, dp_rank=1, dp_size=2, epoch=2)
    assert next_epoch == [[s.ids.tolist() for s in u] for u in epoch_updates(fresh)]


def test_epochs_shuffle_differently_and_deterministically():
    blocks = make_blocks()
    it = iterator(blocks, update_freq=1)
    e1 = [u[0].ids.tolist() for u in epoch_updates(it)]
    e2 = [u[0].ids.tolist() for u in epoch_updates(it)]
    assert it.epoch == 2 and e1 != e2
    assert sorted(sum(e1, [])) == sorted(sum(e2, []))  # same samples, other order (partial batch dropped)
    assert e1 == [u[0].ids.tolist() for u in epoch_updates(iterator(blocks, update_freq=1))]
    assert e1 != [u[0].ids.tolist() for u in epoch_updates(iterator(blocks, update_freq=1, seed=4))]


def test_max_tokens_batches_are_global_and_rank_multiples():
    blocks = make_blocks("eos")
    for dp_size in (1, 3):
        its = [iterator(blocks, batch_size=None, max_tokens=40, dp_rank=r, dp_size=dp_size, update_freq=1)
               for r in range(dp_size)]
        per_rank = [epoch_updates(it) for it in its]
        seen = []
        for u in range(len(per_rank[0])):
            parts = [per_rank[r][u][0] for r in range(dp_size)]
            joined = concat_ranks(parts)
            assert len(joined["id"]) % dp_size == 0 and len({p.nsentences for p in parts}) == 1
            assert joined["src"].numel() <= 40
            seen += joined["id"].tolist()
        assert len(seen) == len(set(seen)) and len(seen) > len(blocks) - 2 * dp_size


def test_validation_keeps_the_partial_last_batch():
    blocks = make_blocks(num_docs=13)
    n = len(blocks)
    ranks = [epoch_updates(iterator(blocks, batch_size=4, dp_rank=r, dp_size=4, update_freq=1, shuffle=False,
                                    drop_last=False)) for r in range(4)]
    assert len({len(r) for r in ranks}) == 1 and len(ranks[0]) == -(-n // 4)
    ids = sorted(i for r in ranks for u in r for i in u[0].ids.tolist() if i >= 0)
    assert ids == list(range(n))
    empty = [u[0] for r in ranks for u in r if u[0].nsentences == 0]
    assert len(empty) == (4 - n % 4) % 4
    assert all(s.ntokens == 0 and (s.targets == PAD).all() for s in empty)


def test_bad_batch_arguments():
    blocks = make_blocks()
    with pytest.raises(BigseqError) as e:
        iterator(blocks, batch_size=6, dp_rank=0, dp_size=4)
    assert str(e.value) == "--batch-size 6 is not divisible by the 4 data-parallel ranks; use a multiple of 4"
    with pytest.raises(BigseqError, match="--max-tokens 10 holds fewer than one sample"):
        iterator(blocks, batch_size=None, max_tokens=10, dp_size=2)
    with pytest.raises(BigseqError, match="fewer than one update"):
        iterator(blocks, batch_size=len(blocks), update_freq=2)
    with pytest.raises(BigseqError, match="set --batch-size N or --max-tokens N"):
        iterator(blocks, batch_size=None)


@pytest.mark.parametrize("drop_last", [True, False])
def test_equal_length_shortcut_matches_the_greedy_cut(drop_last):
    from bigseq.data.batching import _greedy_max_tokens, epoch_order, plan_micro_batches
    src_lengths = make_blocks("none").lengths - 1
    assert len(set(src_lengths.tolist())) == 2  # all T but the last window
    for dp_size, max_tokens in [(1, 8), (2, 40), (3, 40), (3, 50), (4, 100), (4, 40)]:
        order = epoch_order(len(src_lengths), seed=1, epoch=1, shuffle=True)
        fast = plan_micro_batches(order, src_lengths, batch_size=None, max_tokens=max_tokens, dp_size=dp_size,
                                  drop_last=drop_last)
        slow = _greedy_max_tokens(order, src_lengths, limit=len(order), max_tokens=max_tokens, dp_size=dp_size,
                                  drop_last=drop_last)
        assert [b.tolist() for b in fast] == [b.tolist() for b in slow]
