"""Beam search (fairseq's SequenceGenerator rules) on a tiny real encoder-decoder."""

import itertools

import pytest
import torch

from bigseq.errors import BigseqError
from bigseq.generation.beam_search import BeamSearchGenerator
from bigseq.generation.config import BeamSearchConfig
from tests.generation.tiny_seq2seq import EOS, PAD, UNK, left_pad, tiny_transformer

SOURCES = [[4, 5, 6, EOS], [7, EOS], [5, 5, 8, 9, 4, EOS]]


def search(model, sources=SOURCES, prefix=None, seed=None, vocab_size=None, **cfg):
    gen = BeamSearchGenerator(model, BeamSearchConfig(**cfg), eos_idx=EOS, pad_idx=PAD, unk_idx=UNK,
                              vocab_size=vocab_size)
    return gen.generate(*left_pad(sources), prefix_tokens=prefix, seed=seed)


def token_lprobs(model, source, hyps):
    """log p of each token of each hypothesis (eos included) from one full, uncached forward."""
    width = max(len(h) for h in hyps)
    target = torch.full((len(hyps), width), PAD)
    prev = torch.full((len(hyps), width), PAD)
    for i, h in enumerate(hyps):
        target[i, :len(h)] = torch.tensor(h)
        prev[i, :len(h)] = torch.tensor([EOS, *h[:-1]])
    src, lengths = left_pad([source] * len(hyps))
    with torch.no_grad():
        lprobs = model(src, lengths, prev).float().log_softmax(-1).gather(-1, target[..., None])[..., 0]
    return [lprobs[i, :len(h)] for i, h in enumerate(hyps)]


def exhaustive_best(model, source, *, max_len, min_len=1, lenpen=1.0):
    words = [w for w in range(model.output_weight.shape[0]) if w not in (PAD, EOS)]
    hyps = [[*seq, EOS] for n in range(min_len, max_len + 1) for seq in itertools.product(words, repeat=n)]
    scores = [float(lp.sum()) / len(h) ** lenpen for h, lp in zip(hyps, token_lprobs(model, source, hyps))]
    best = max(range(len(hyps)), key=scores.__getitem__)
    return hyps[best], scores[best]


@pytest.mark.parametrize("seed,lenpen", [(1, 1.0), (2, 1.0), (3, 0.0), (5, 3.0), (0, 1.0), (4, 0.0)])
def test_best_hypothesis_is_the_exhaustive_best_and_every_score_is_its_full_forward(seed, lenpen):
    # 5 words besides pad and eos, beam 6 (fairseq's cap: vocab - 1), at most 3 words: the 155 possible
    # hypotheses are enumerated. Beam search is not exhaustive: on the first four cases it finds the best
    # (asserted); on the last two it keeps a worse one, which may never score above the exhaustive best.
    model = tiny_transformer(vocab=7, seed=seed, sharpness=4.0)
    sources = [[4, 5, EOS], [6, EOS]]
    out = search(model, sources, beam=6, max_len_b=3, lenpen=lenpen, vocab_size=7)
    found = []
    for source, hyps in zip(sources, out):
        assert len(hyps) == 6 and all(int(h.tokens[-1]) == EOS for h in hyps)
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        full = token_lprobs(model, source, [h.tokens.tolist() for h in hyps])
        for h, lp in zip(hyps, full):  # the cached, reordered, batched search scores each token as a full forward
            torch.testing.assert_close(h.positional_scores, lp, atol=1e-5, rtol=0)
            assert h.score == pytest.approx(float(lp.sum()) / len(lp) ** lenpen, abs=1e-5)
        tokens, score = exhaustive_best(model, source, max_len=3, lenpen=lenpen)
        assert hyps[0].score <= score + 1e-5
        found.append(hyps[0].tokens.tolist() == tokens and hyps[0].score == pytest.approx(score, abs=1e-5))
    assert all(found) == (seed in (1, 2, 3, 5))


def test_lenpen_favours_longer_hypotheses_as_the_formula_says():
    model = tiny_transformer(vocab=7, seed=3, sharpness=4.0)
    short = exhaustive_best(model, [6, EOS], max_len=3, lenpen=0.0)[0]
    long = exhaustive_best(model, [6, EOS], max_len=3, lenpen=3.0)[0]
    assert len(short) < len(long)  # the case is chosen so the penalty flips the ranking
    for lenpen, expected in ((0.0, short), (3.0, long)):
        assert search(model, [[6, EOS]], beam=6, max_len_b=3, lenpen=lenpen)[0][0].tokens.tolist() == expected


def test_unnormalized_scores_are_the_plain_log_probability():
    model = tiny_transformer(seed=1, sharpness=3.0)
    for hyps in search(model, beam=3, max_len_b=5, unnormalized=True):
        for h in hyps:
            assert h.score == pytest.approx(float(h.positional_scores.sum()), abs=1e-5)


def greedy(model, source, max_len, min_len=1):
    tokens, lprobs = [EOS], []
    src, lengths = left_pad([source])
    for step in range(max_len + 1):
        with torch.no_grad():
            lp = model(src, lengths, torch.tensor([tokens])).float().log_softmax(-1)[0, -1]
        lp[PAD] = float("-inf")
        if step < min_len:
            lp[EOS] = float("-inf")
        word = EOS if step == max_len else int(lp.argmax())
        tokens.append(word)
        lprobs.append(float(lp[word]))
        if word == EOS:
            return tokens[1:], sum(lprobs) / len(lprobs)


def test_beam_one_is_greedy_and_top_k_1_sampling_too():
    model = tiny_transformer(seed=4, sharpness=2.0)
    for kwargs in ({"beam": 1}, {"beam": 3, "sampling": True, "sampling_topk": 1}):
        out = search(model, max_len_b=6, min_len=2, seed=7, **kwargs)
        for source, hyps in zip(SOURCES, out):
            tokens, score = greedy(model, source, max_len=6, min_len=2)
            assert len(hyps) == kwargs["beam"]
            for h in hyps:
                assert h.tokens.tolist() == tokens and h.score == pytest.approx(score, abs=1e-5)


def test_sampling_is_reproducible_per_seed_and_draws_beam_samples():
    model = tiny_transformer(seed=5)
    runs = [search(model, beam=4, sampling=True, temperature=3.0, max_len_b=8, seed=s) for s in (1, 1, 2)]
    as_lists = [[[h.tokens.tolist() for h in hyps] for hyps in run] for run in runs]
    assert as_lists[0] == as_lists[1] and as_lists[0] != as_lists[2]
    assert all(len(hyps) == 4 for hyps in runs[0])
    nucleus = search(model, beam=4, sampling=True, sampling_topp=0.3, max_len_b=6, seed=1)
    for source, hyps in zip(SOURCES, nucleus):
        for h, lp in zip(hyps, token_lprobs(model, source, [h.tokens.tolist() for h in hyps])):
            chosen = lp[:6]  # the eos at max_len (step 6) is forced, not sampled
            assert torch.all(chosen > -3.0)  # only words inside the 0.3 nucleus: none very unlikely


def test_finished_sentences_leave_the_batch_with_the_same_results_as_one_at_a_time():
    model = tiny_transformer(seed=2)
    sources = SOURCES + [[9, 9, EOS], [4, EOS]]
    batched = search(model, sources, beam=4, max_len_b=7)
    lengths = {len(hyps[0].tokens) for hyps in batched}
    assert len(lengths) > 1  # sentences finish at different steps, so some leave the batch early
    for source, hyps in zip(sources, batched):
        alone = search(model, [source], beam=4, max_len_b=7)[0]
        assert [h.tokens.tolist() for h in hyps] == [h.tokens.tolist() for h in alone]
        assert [h.score for h in hyps] == pytest.approx([h.score for h in alone], abs=1e-5)


def test_max_len_ends_with_eos_keeping_its_real_log_probability_and_min_len_blocks_eos():
    model = tiny_transformer(seed=7)
    with torch.no_grad():
        model.output_weight[EOS] = 0  # eos neither favoured nor ruled out
    out = search(model, beam=3, max_len_b=3, min_len=2)
    assert any(len(h.tokens) == 4 for hyps in out for h in hyps)  # some hypotheses stop at max_len
    for source, hyps in zip(SOURCES, out):
        full = token_lprobs(model, source, [h.tokens.tolist() for h in hyps])
        for h, lp in zip(hyps, full):
            assert 3 <= len(h.tokens) <= 4 and int(h.tokens[-1]) == EOS
            assert float(lp[-1]) < 0 and float(h.positional_scores[-1]) == pytest.approx(float(lp[-1]), abs=1e-5)
    src, _ = left_pad(SOURCES)
    gen = BeamSearchGenerator(model, BeamSearchConfig(max_len_a=1.5, max_len_b=2), eos_idx=EOS, pad_idx=PAD)
    assert gen.max_len(src.shape[1], src.ne(PAD).sum(1)) == int(1.5 * 6 + 2)  # a * padded width + b
    assert BeamSearchGenerator(model, BeamSearchConfig(max_len_b=500), eos_idx=EOS, pad_idx=PAD).max_len(6, None) == 63
    with pytest.raises(BigseqError, match="--min-len"):
        search(model, min_len=5, max_len_b=3)


def test_no_repeat_ngram_blocks_every_repeated_bigram():
    model = tiny_transformer(vocab=6, seed=8, sharpness=3.0)
    def repeats(hyps):
        grams = [list(zip(t, t[1:])) for t in ([EOS, *h.tokens.tolist()] for h in hyps)]
        return sum(len(g) - len(set(g)) for g in grams)
    sources = [[4, 5, EOS], [5, EOS]]
    free = search(model, sources, beam=3, max_len_b=8, min_len=8)
    assert sum(repeats(h) for h in free) > 0  # without the blocker this model repeats itself
    blocked = search(model, sources, beam=3, max_len_b=8, min_len=8, no_repeat_ngram_size=2)
    assert all(repeats(h) == 0 for h in blocked)


def test_prefix_is_forced_from_the_reference_and_scored_by_the_model():
    model = tiny_transformer(seed=9, sharpness=3.0)
    prefix = torch.tensor([[11, 10, 9], [10, EOS, PAD], [8, 8, 11]])
    out = search(model, beam=3, max_len_b=6, prefix_size=2, prefix=prefix)
    for source, row, hyps in zip(SOURCES, prefix.tolist(), out):
        full = token_lprobs(model, source, [h.tokens.tolist() for h in hyps])
        for h, lp in zip(hyps, full):
            if row[1] == EOS:  # the reference ends inside the prefix: the hypothesis is exactly the prefix
                assert h.tokens.tolist() == row[:2]
            else:
                assert h.tokens[:2].tolist() == row[:2] and len(h.tokens) > 2
            torch.testing.assert_close(h.positional_scores, lp, atol=1e-5, rtol=0)


def test_match_source_len_limits_hypotheses_to_the_source_length():
    # fairseq: max_len = the longest source (eos not counted); a hypothesis longer than its own source scores -inf
    model = tiny_transformer(seed=10)
    out = search(model, beam=3, match_source_len=True)
    assert max(len(h.tokens) for hyps in out for h in hyps) <= max(len(s) for s in SOURCES)
    for source, hyps in zip(SOURCES, out):
        assert all((h.score == float("-inf")) == (len(h.tokens) > len(source)) for h in hyps)
    assert out[2][0].score > float("-inf")


def test_unk_penalty_removes_unknown_words():
    model = tiny_transformer(seed=0)
    with torch.no_grad():
        model.output_weight[UNK] = 3 * model.output_weight[5]  # unk outscores word 4 wherever that one is likely
    has_unk = lambda out: any(UNK in h.tokens.tolist() for hyps in out for h in hyps)  # noqa: E731
    assert has_unk(search(model, beam=2, max_len_b=6))
    assert not has_unk(search(model, beam=2, max_len_b=6, unkpen=1000.0))


def test_bad_flags_are_one_line_errors():
    with pytest.raises(BigseqError, match="--nbest 6 must be between 1 and --beam 5"):
        BeamSearchConfig(nbest=6)
    with pytest.raises(BigseqError, match="--prefix-size needs reference"):
        search(tiny_transformer(), prefix_size=1)


def test_largest_by_chunks_equals_topk():
    from bigseq.generation.search import CHUNK, largest
    gen = torch.Generator().manual_seed(0)
    for width in (5 * 2784, 5 * 4000, 64 * CHUNK, 40 * CHUNK + 3, 30):
        x = torch.log_softmax(torch.randn(7, width, generator=gen) * 3, -1)
        x[:, 1] = float("-inf")  # pad
        if width > 6 * CHUNK:  # one chunk holding several of a row's best
            x[2, 5 * CHUNK + 7], x[2, 5 * CHUNK + 9] = 5.0, 4.0
        for row, scores, idx in zip(x, *largest(x, 10)):
            want = row.topk(10)
            assert torch.equal(scores, want.values) and torch.equal(idx, want.indices)
    few = torch.full((2, 50 * CHUNK), float("-inf"))
    few[0, 3], few[1, 4000] = -1.0, -2.0  # fewer finite values than k: topk's own choice
    assert torch.equal(largest(few, 10)[1], few.topk(10).indices)


def _banned_by_loop(seq: list[int], n: int) -> set[int]:
    """fairseq's CPU blocker, row by row: the words after every earlier copy of the last n-1 tokens."""
    if n == 1:
        return set(seq[1:])
    T, context = len(seq), seq[len(seq) - n + 1:]
    return {seq[i + n - 1] for i in range(T - n + 1) if seq[i:i + n - 1] == context}


def test_vectorized_ngram_blocker_bans_what_the_row_loop_bans():
    from bigseq.generation.search import block_repeated_ngrams
    gen = torch.Generator().manual_seed(0)
    for n in (1, 2, 3, 4):
        for T in (1, 2, 3, 5, 12):
            tokens = torch.randint(4, 8, (9, T), generator=gen)  # few words: many repeats
            tokens[:, 0] = EOS
            lprobs = torch.zeros(9, 8)
            block_repeated_ngrams(tokens, lprobs, n)
            for row, seq in zip(lprobs, tokens.tolist()):
                assert set(torch.isneginf(row).nonzero().flatten().tolist()) == _banned_by_loop(seq, n), (n, seq)
