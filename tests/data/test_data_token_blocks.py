"""Sample cutting (none / eos / complete) on a hand-made stream, and coverage properties."""

import numpy as np
import pytest

from bigseq.data.indexed_dataset import MMapIndexedDataset, MMapIndexedDatasetBuilder
from bigseq.data.token_blocks import TokenBlocks

EOS = 2
# doc0 = 10 11 12 | doc1 = 13 14 15 16 17 | doc2 = 18 | doc3 = 19 20 21 22
SIZES = [3, 5, 1, 4]
STREAM = np.arange(10, 23)


def samples(mode, T, sizes=SIZES, stream=STREAM):
    blocks = TokenBlocks.build(stream, np.array(sizes), tokens_per_sample=T, break_mode=mode, eos=EOS)
    out = [blocks[i].tolist() for i in range(len(blocks))]
    assert blocks.lengths.tolist() == [len(s) for s in out]
    return out


def test_none_windows_overlap_by_one():
    assert samples("none", 4) == [[10, 11, 12, 13, 14], [14, 15, 16, 17, 18], [18, 19, 20, 21, 22]]
    assert samples("none", 5) == [[10, 11, 12, 13, 14, 15], [15, 16, 17, 18, 19, 20], [20, 21, 22]]


def test_eos_one_document_per_sample_split_when_long():
    assert samples("eos", 4) == [[2, 10, 11, 12], [2, 13, 14, 15, 16], [16, 17], [2, 18], [2, 19, 20, 21, 22]]


def test_complete_packs_whole_documents():
    assert samples("complete", 6) == [[2, 10, 11, 12], [2, 13, 14, 15, 16, 17, 18], [2, 19, 20, 21, 22]]
    # doc1 is longer than 4: its pieces fill blocks, its tail shares a block with doc2
    assert samples("complete", 4) == [[2, 10, 11, 12], [2, 13, 14, 15, 16], [16, 17, 18], [2, 19, 20, 21, 22]]


def test_empty_documents_and_empty_stream():
    assert samples("eos", 4, sizes=[0, 3, 0], stream=np.arange(3)) == [[2, 0, 1, 2]]
    assert samples("complete", 4, sizes=[], stream=np.arange(0)) == []
    assert samples("none", 4, sizes=[1], stream=np.arange(1)) == []


@pytest.mark.parametrize("mode", ["none", "eos", "complete"])
@pytest.mark.parametrize("T", [1, 3, 8])
def test_every_token_is_a_target_once(mode, T, tmp_path):
    rng = np.random.default_rng(0)
    sizes = rng.integers(0, 20, size=40)
    with MMapIndexedDatasetBuilder(str(tmp_path / "d"), np.uint16) as b:
        b.add_items(rng.integers(4, 500, size=int(sizes.sum())), sizes)
    ds = MMapIndexedDataset(str(tmp_path / "d"))
    blocks = TokenBlocks.build(ds.tokens, ds.sizes, tokens_per_sample=T, break_mode=mode, eos=EOS)
    assert isinstance(blocks.tokens, np.memmap)
    assert blocks.lengths.max() <= T + 1 and blocks.lengths.min() >= 2
    targets = np.concatenate([blocks[i][1:] for i in range(len(blocks))])
    stream = np.asarray(ds.tokens, dtype=np.int64)
    assert np.array_equal(targets, stream[1:] if mode == "none" else stream)
    if mode != "none":  # eos-prefixed exactly when the first target starts a document
        doc_starts = set(np.concatenate([[0], np.cumsum(sizes)[:-1]])[sizes > 0].tolist())
        first_targets = blocks.starts + ~blocks.prefix_eos
        assert [int(t) in doc_starts for t in first_targets] == blocks.prefix_eos.tolist()
