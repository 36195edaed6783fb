"""LanguagePairDataset through the translation task on a hand-built fairseq data dir: collate,
--max-tokens batching, world-size independence, resume, size filtering, loss normalization."""

import struct

import numpy as np
import pytest
import torch

from bigseq.criterions.cross_entropy import CrossEntropyConfig, CrossEntropyCriterion
from bigseq.errors import BigseqError
from bigseq.tasks import setup_task
from bigseq.tasks.translation import TranslationConfig

PAD, EOS, V, N = 1, 2, 40, 60


def write_fairseq_split(prefix, lines):
    """fairseq-preprocess --dataset-impl mmap: uint16 tokens, index without document index."""
    sizes = np.array([len(x) for x in lines], dtype="<i4")
    pointers = np.concatenate([[0], np.cumsum(sizes)[:-1] * 2]).astype("<i8")
    with open(f"{prefix}.idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", 8) + struct.pack("<Q", len(lines)))
        f.write(sizes.tobytes() + pointers.tobytes())
    np.concatenate(lines).astype("<u2").tofile(f"{prefix}.bin")


def make_lines(rng, n, longest=20):
    return [np.append(rng.integers(4, V, size=rng.integers(0, longest)), EOS) for _ in range(n)]


@pytest.fixture(scope="module")
def fairseq_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fs")
    for lang in ("de", "en"):  # 36 words + 4 specials = 40 types, a multiple of 8: no madeupwords
        (root / f"dict.{lang}.txt").write_text("".join(f"{lang}{i} {100 - i}\n" for i in range(V - 4)))
    rng = np.random.default_rng(0)
    data = {}
    for split, n in (("train", N), ("valid", 13)):
        data[split] = make_lines(rng, n), make_lines(rng, n)
        write_fairseq_split(root / f"{split}.de-en.de", data[split][0])
        write_fairseq_split(root / f"{split}.de-en.en", data[split][1])
    return root, data


def task(path, **kw):
    return setup_task("translation", TranslationConfig(data=str(path), **kw))


def updates(t, split="train", limit=None, **kw):
    args = dict(batch_size=None, max_tokens=64, seed=3, dp_rank=0, dp_size=1, update_freq=2)
    args.update(kw)
    out = []
    for update in t.get_batch_iterator(split, **args).next_epoch_itr():
        out.append(update)
        if len(out) == limit:
            break
    return out


def test_fairseq_dir_loads_and_collates_as_fairseq(fairseq_dir):
    path, data = fairseq_dir
    t = task(path)
    assert (t.source_lang, t.target_lang, t.src_vocab_size, t.tgt_vocab_size, t.vocab_size) == ("de", "en", V, V, V)
    assert (t.pad_idx, t.eos_idx, t.joined_dictionary) == (PAD, EOS, False)
    assert t.source_dictionary.symbols[4] == "de0" and t.target_dictionary.symbols[4] == "en0"
    src_lines, tgt_lines = data["train"]
    seen = []
    for update in updates(t, update_freq=1):
        for b in update:
            assert b.net_input.keys() == {"src_tokens", "src_lengths", "prev_output_tokens"}
            for row, line in enumerate(b.ids.tolist()):
                src, tgt = src_lines[line], tgt_lines[line]
                assert b.src_tokens[row, -len(src):].tolist() == src.tolist()  # left padded, ends with eos
                assert (b.src_tokens[row, :-len(src)] == PAD).all() and b.src_lengths[row] == len(src)
                assert b.targets[row, :len(tgt)].tolist() == tgt.tolist() and (b.targets[row, len(tgt):] == PAD).all()
                assert b.prev_output_tokens[row, :len(tgt)].tolist() == [EOS] + tgt[:-1].tolist()
                assert (b.prev_output_tokens[row, len(tgt):] == PAD).all()
            assert b.ntokens == int((b.targets != PAD).sum()) == b.global_ntokens
            seen += b.ids.tolist()
    assert sorted(seen) == list(range(N))  # every pair, the partial last batch included
    right = updates(task(path, left_pad_source=False, left_pad_target=True), limit=1)[0][0]
    line = right.ids[0].item()
    src, tgt = src_lines[line], tgt_lines[line]
    assert right.src_tokens[0, :len(src)].tolist() == src.tolist()
    assert right.targets[0, -len(tgt):].tolist() == tgt.tolist()
    assert right.prev_output_tokens[0, -len(tgt):].tolist() == [EOS] + tgt[:-1].tolist()
    swapped = task(path, source_lang="en")  # -s en: the de-en files read the other way round
    assert (swapped.source_lang, swapped.target_lang) == ("en", "de")
    b = updates(swapped, limit=1)[0][0]
    assert b.targets[0, :len(src_lines[b.ids[0]])].tolist() == src_lines[b.ids[0]].tolist()


def test_max_tokens_batches_are_length_sorted_and_fairseq_cut(fairseq_dir):
    path, data = fairseq_dir
    src_sizes = np.array([len(x) for x in data["train"][0]])
    tgt_sizes = np.array([len(x) for x in data["train"][1]])
    num_tokens = np.maximum(src_sizes, tgt_sizes)
    t = task(path)
    ordered = [b.ids.numpy() for u in updates(t, update_freq=1, shuffle=False, drop_last=False) for b in u]
    # fairseq's ordered_indices without the shuffle: by target length, then (deciding) source length
    expected = np.arange(N)[np.argsort(tgt_sizes, kind="stable")]
    expected = expected[np.argsort(src_sizes[expected], kind="stable")]
    assert np.concatenate(ordered).tolist() == expected.tolist()
    for i, ids in enumerate(ordered):
        assert len(ids) * num_tokens[ids].max() <= 64  # sentences x longest, as batch_by_size counts
        if i + 1 < len(ordered):  # and each batch is as large as the rule allows
            nxt = ordered[i + 1][0]
            assert (len(ids) + 1) * max(num_tokens[ids].max(), num_tokens[nxt]) > 64
    epochs = t.get_batch_iterator("train", batch_size=None, max_tokens=64, seed=3, dp_rank=0, dp_size=1)
    e1 = [b.ids.tolist() for u in epochs.next_epoch_itr() for b in u]
    e2 = [b.ids.tolist() for u in epochs.next_epoch_itr() for b in u]
    assert e1 != e2 and sorted(sum(e1, [])) == sorted(sum(e2, [])) == list(range(N))
    with pytest.raises(BigseqError, match=r"--max-tokens 10 cannot hold the longest pair of 'train' \(20 tokens"):
        t.get_batch_iterator("train", batch_size=None, max_tokens=10, seed=1, dp_rank=0, dp_size=1)


@pytest.mark.parametrize("batching", [dict(max_tokens=64), dict(max_tokens=None, batch_size=6)])
def test_same_global_batches_on_any_world_size(fairseq_dir, batching):
    t = task(fairseq_dir[0])
    single = updates(t, **batching)
    for dp_size in (2, 3):
        ranks = [updates(t, dp_rank=r, dp_size=dp_size, **batching) for r in range(dp_size)]
        assert all(len(r) == len(single) for r in ranks)
        for u, update in enumerate(single):
            for m, whole in enumerate(update):
                parts = [ranks[r][u][m] for r in range(dp_size)]
                real = [p for p in parts if p.nsentences]  # a filler row when a batch has < dp_size pairs
                for field in ("ids", "src_tokens", "src_lengths", "prev_output_tokens", "targets"):
                    assert torch.equal(torch.cat([getattr(p, field) for p in real]), getattr(whole, field))
                assert sum(p.ntokens for p in parts) == whole.global_ntokens
                assert all(p.global_ntokens == whole.global_ntokens for p in parts)
                assert max(p.nsentences for p in parts) - min(p.nsentences for p in parts) <= 1


def test_resume_mid_epoch_continues_with_the_next_batches(fairseq_dir):
    t = task(fairseq_dir[0])
    args = dict(batch_size=None, max_tokens=64, seed=5, dp_rank=1, dp_size=2, update_freq=2)
    full = [[b.ids.tolist() for b in u] for u in t.get_batch_iterator("train", **args).next_epoch_itr()]
    first = t.get_batch_iterator("train", **args)
    itr = first.next_epoch_itr()
    done = [next(itr) for _ in range(2)]
    resumed = t.get_batch_iterator("train", **args)
    resumed.load_state_dict(first.state_dict())
    rest = [[b.ids.tolist() for b in u] for u in resumed.next_epoch_itr()]
    assert len(done) == 2 and rest == full[2:]


def test_loss_is_normalized_by_the_global_target_count(fairseq_dir):
    """The trainer scales each slice's summed loss by world_size / global_ntokens and DeepSpeed averages
    over ranks: over slices (filler rows included) that is the single-process mean over target tokens."""
    t = task(fairseq_dir[0])
    torch.manual_seed(0)
    table = torch.randn(V, V)

    def model(src_tokens, src_lengths, prev_output_tokens):
        return table[prev_output_tokens] + table[src_tokens[:, -1:]]

    criterion = CrossEntropyCriterion(CrossEntropyConfig(loss_impl="torch"), t)
    single = updates(t, update_freq=3, limit=1)[0]
    expected = sum(criterion(model, b)[0] for b in single) / sum(b.ntokens for b in single)
    dp = 4
    ranks = [updates(t, update_freq=3, limit=1, dp_rank=r, dp_size=dp)[0] for r in range(dp)]
    global_ntokens = sum(b.global_ntokens for b in ranks[0])
    got = sum(criterion(model, b)[0] * dp / global_ntokens for r in ranks for b in r) / dp
    torch.testing.assert_close(got, expected)


def test_over_long_pairs(fairseq_dir, capsys):
    path, data = fairseq_dir
    src_sizes = np.array([len(x) for x in data["train"][0]])
    tgt_sizes = np.array([len(x) for x in data["train"][1]])
    too_long = int(((src_sizes > 10) | (tgt_sizes > 12)).sum())
    t = task(path, max_source_positions=10, max_target_positions=12)
    kept = [i for u in updates(t, update_freq=1) for b in u for i in b.ids.tolist()]
    assert sorted(kept) == [i for i in range(N) if src_sizes[i] <= 10 and tgt_sizes[i] <= 12]
    assert capsys.readouterr().err == (f"bigseq: warning: dropped {too_long} of {N} 'train' pairs longer than "
                                       "--max-source-positions 10 / --max-target-positions 12 (eos included)\n")
    updates(t, dp_rank=1, dp_size=2)
    assert capsys.readouterr().err == ""  # one warning per run, from rank 0
    with pytest.raises(BigseqError, match=r"pairs of 'valid' are longer than --max-source-positions 10 .*"
                                          "--skip-invalid-size-inputs-valid-test"):
        updates(t, "valid", shuffle=False)
    skip = task(path, max_source_positions=10, max_target_positions=12, skip_invalid_size_inputs_valid_test=True)
    assert all(b.src_tokens.shape[1] <= 10 for u in updates(skip, "valid", shuffle=False) for b in u)
    truncated = task(path, max_source_positions=6, max_target_positions=1024, truncate_source=True)
    rows = [(b, r) for u in updates(truncated, update_freq=1) for b in u for r in range(len(b.ids))]
    assert len(rows) == N
    for b, r in rows:
        src = data["train"][0][b.ids[r]]
        want = src if len(src) <= 6 else np.append(src[:5], EOS)
        assert b.src_tokens[r, -len(want):].tolist() == want.tolist() and b.src_lengths[r] == len(want)


def test_batch_buckets_pad_to_a_few_widths(fairseq_dir):
    t = task(fairseq_dir[0], num_batch_buckets=3)
    widths = {b.src_tokens.shape[1] for u in updates(t) for b in u}
    ds = t.dataset("train", ignore_invalid_inputs=True)
    assert widths <= set(ds.src_widths.tolist()) and len(set(ds.src_widths.tolist())) <= 3
