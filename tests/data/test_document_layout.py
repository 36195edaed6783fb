"""--document-mask's collate: positions restart and cu_seqlens cut at each eos of the source and row start."""

import numpy as np
import pytest

from bigseq.data.lm_dataset import LMDataset, collate_lm
from bigseq.data.token_blocks import TokenBlocks

EOS, PAD = 2, 1
# every document ends with eos: d0 = 10 11 | d1 = 12 13 14 15 | d2 = 16 | d3 = 17 18 19
DOCS = [[10, 11, EOS], [12, 13, 14, 15, EOS], [16, EOS], [17, 18, 19, EOS]]


def batch(mode, T, width, docs=DOCS, document_mask=True):
    blocks = TokenBlocks.build(np.array(sum(docs, [])), np.array([len(d) for d in docs]), tokens_per_sample=T,
                               break_mode=mode, eos=EOS)
    ds = LMDataset(blocks, PAD, document_mask=document_mask)
    return ds.collate([ds[i] for i in range(len(ds))], np.arange(len(ds)), width=width, global_ntokens=0)


def test_complete_restarts_at_each_packed_document_and_pads_the_last():
    b = batch("complete", 8, 8)
    assert b.tokens.tolist() == [[EOS, 10, 11, EOS, 12, 13, 14, 15], [EOS, 16, EOS, 17, 18, 19, PAD, PAD]]
    assert b.positions.tolist() == [[0, 1, 2, 0, 1, 2, 3, 4], [0, 1, 0, 1, 2, 3, 4, 5]]
    assert b.cu_seqlens.tolist() == [0, 3, 8, 10, 16]
    assert b.net_input.keys() == {"src_tokens", "positions", "cu_seqlens"}


def test_none_starts_a_document_at_each_window_start_too():
    b = batch("none", 5, 5)  # d1 is cut between the first two windows
    assert b.tokens.tolist() == [[10, 11, EOS, 12, 13], [14, 15, EOS, 16, EOS], [17, 18, 19, PAD, PAD]]
    assert b.positions.tolist() == [[0, 1, 0, 1, 2], [0, 1, 0, 1, 0], [0, 1, 2, 3, 4]]
    assert b.cu_seqlens.tolist() == [0, 2, 5, 7, 9, 10, 15]


def test_eos_mode_is_one_document_per_row():
    b = batch("eos", 8, 5)
    assert b.positions.tolist() == [list(range(5))] * 4
    assert b.cu_seqlens.tolist() == [0, 5, 10, 15, 20]


def test_off_by_default_and_the_all_pad_row():
    b = batch("complete", 8, 8, document_mask=False)
    assert b.positions is None and b.cu_seqlens is None and b.net_input.keys() == {"src_tokens"}
    empty = collate_lm([], np.array([], dtype=np.int64), pad_idx=PAD, width=4, global_ntokens=0, document_eos=EOS)
    assert empty.positions.tolist() == [[0, 1, 2, 3]] and empty.cu_seqlens.tolist() == [0, 4]


@pytest.mark.parametrize("T", [6, 16, 40])
def test_complete_every_document_is_one_segment_eos_first(T):
    rng = np.random.default_rng(T)
    docs = [rng.integers(3, 50, size=int(n)).tolist() + [EOS] for n in rng.integers(1, 6, size=30)]
    b = batch("complete", T, T, docs=docs)
    src, tgt, cu = b.tokens.flatten().tolist(), b.targets.flatten().tolist(), b.cu_seqlens.tolist()
    segments = [(src[s:e], tgt[s:e]) for s, e in zip(cu[:-1], cu[1:])]
    real = [(s[:len(t) - t.count(PAD)], t[:len(t) - t.count(PAD)]) for s, t in segments]
    assert real == [([EOS] + d[:-1], d) for d in docs]  # each one as `[eos] doc` alone
    assert b.positions.flatten().tolist() == [i for s, _ in segments for i in range(len(s))]


def test_a_model_without_the_layout_inputs_is_refused_in_one_line():
    from bigseq.errors import BigseqError
    from bigseq.models.transformer_lm.model import TransformerLanguageModel
    from bigseq.tasks.language_modeling import check_document_mask

    class TokensOnly:
        def forward(self, src_tokens):
            return src_tokens

    check_document_mask(TransformerLanguageModel, "transformer_lm")
    with pytest.raises(BigseqError, match="--document-mask: model plugin_lm takes no positions/cu_seqlens"):
        check_document_mask(TokensOnly, "plugin_lm")
