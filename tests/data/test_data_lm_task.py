"""language_modeling task: bigseq and fairseq data dirs, batches, and data-dir errors."""

import struct

import numpy as np
import pytest

from bigseq.cli.preprocess import main as preprocess_main
from bigseq.data.dictionary import Dictionary
from bigseq.errors import BigseqError
from bigseq.tasks import setup_task
from bigseq.tasks.language_modeling import LanguageModelingConfig


def task(data, **kw):
    return setup_task("language_modeling", LanguageModelingConfig(data=str(data), **kw))


def write_fairseq_split(prefix, docs):
    """fairseq-preprocess --dataset-impl mmap layout, from its documented bytes (no document index)."""
    sizes = np.array([len(d) for d in docs], dtype="<i4")
    pointers = np.concatenate([[0], np.cumsum(sizes)[:-1] * 2]).astype("<i8")
    with open(f"{prefix}.idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", 8) + struct.pack("<Q", len(docs)))
        f.write(sizes.tobytes() + pointers.tobytes())
    np.concatenate(docs).astype("<u2").tofile(f"{prefix}.bin")


@pytest.fixture
def fairseq_dir(tmp_path):
    words = ["the", "cat", "sat", "on", "mat", "dog"]
    lines = [f"{w} {100 - i}" for i, w in enumerate(words)] + ["<unk> 0 #fairseq:overwrite"]
    lines += [f"madeupword{i:04d} 0" for i in range(5)]  # fairseq pads the vocabulary to a multiple of 8
    (tmp_path / "dict.txt").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    docs = [np.append(rng.integers(4, 10, size=n), 2) for n in (5, 9, 3, 12, 7, 4, 8, 6)]  # lines + eos
    write_fairseq_split(tmp_path / "train", docs)
    write_fairseq_split(tmp_path / "valid", docs[:3])
    return tmp_path, docs


def test_fairseq_dictionary(fairseq_dir):
    d = Dictionary.load(str(fairseq_dir[0] / "dict.txt"))
    assert len(d) == 16 and d.symbols[4] == "the" and d.index("sat") == 6 and d.index("zebra") == 3
    assert (d.bos_idx, d.pad_idx, d.eos_idx, d.unk_idx) == (0, 1, 2, 3) and d.symbols[10] == "<unk>"
    (fairseq_dir[0] / "bad.txt").write_text("the 3\nthe 4\n")
    with pytest.raises(BigseqError, match="duplicate token 'the'"):
        Dictionary.load(str(fairseq_dir[0] / "bad.txt"))
    (fairseq_dir[0] / "bad.txt").write_text("the three\n")
    with pytest.raises(BigseqError, match=r"bad.txt:1: expected '<token> <count>"):
        Dictionary.load(str(fairseq_dir[0] / "bad.txt"))


def test_fairseq_dir_loads_as_is(fairseq_dir):
    path, docs = fairseq_dir
    t = task(path, tokens_per_sample=4, sample_break_mode="none")
    assert (t.vocab_size, t.pad_idx, t.eos_idx, t.tokenizer) == (16, 1, 2, None)
    stream = np.concatenate(docs)
    it = t.get_batch_iterator("train", batch_size=2, max_tokens=None, seed=1, dp_rank=0, dp_size=1, shuffle=False)
    targets = [s.targets[s.targets != 1] for update in it.next_epoch_itr() for s in update]
    # unshuffled, all samples kept: the targets are the stream after its first token, in order
    # (the last partial batch is dropped for training, so compare the covered prefix)
    flat = np.concatenate([x.numpy() for x in targets])
    assert np.array_equal(flat, stream[1:1 + len(flat)]) and len(flat) >= len(stream) - 1 - 2 * 4
    eos_task = task(path, tokens_per_sample=16, sample_break_mode="eos")
    blocks = eos_task.load_dataset("valid")
    assert [blocks[i].tolist() for i in range(len(blocks))] == [[2] + d.tolist() for d in docs[:3]]


def test_bigseq_dir_train_and_valid(tmp_path):
    text = "\n".join(f"document number {i} " + "word " * (i % 7) for i in range(40))
    (tmp_path / "t.txt").write_text(text)
    preprocess_main(["--trainpref", str(tmp_path / "t.txt"), "--validpref", str(tmp_path / "t.txt"),
                     "--destdir", str(tmp_path / "bin"), "--vocab-size", "300"])
    t = task(tmp_path / "bin", tokens_per_sample=16, sample_break_mode="complete")
    assert t.tokenizer is not None and t.vocab_size == t.tokenizer.vocab_size and (t.pad_idx, t.eos_idx) == (1, 2)
    train = t.get_batch_iterator("train", batch_size=4, max_tokens=None, seed=1, dp_rank=1, dp_size=2, update_freq=2)
    update = next(train.next_epoch_itr())
    assert len(update) == 2 and update[0].tokens.shape[0] == 2
    first_row = update[0].tokens[0]
    assert first_row[0] == 2 and "document number" in t.tokenizer.decode(first_row)
    valid = [t.get_batch_iterator("valid", batch_size=4, max_tokens=None, seed=1, dp_rank=r, dp_size=2,
                                  shuffle=False) for r in range(2)]
    batches = [[u[0] for u in v.next_epoch_itr()] for v in valid]
    assert len(batches[0]) == len(batches[1])
    assert sum(s.ntokens for b in batches for s in b) == t.datasets["valid"].num_targets


def test_data_dir_errors(tmp_path, fairseq_dir):
    with pytest.raises(BigseqError, match="no data directory given"):
        setup_task("language_modeling", LanguageModelingConfig())
    with pytest.raises(BigseqError, match="does not exist; run `bigseq preprocess"):
        task(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BigseqError, match="neither metadata.json .bigseq. nor dict.txt"):
        task(tmp_path / "empty")
    path, _ = fairseq_dir
    t = task(path)
    with pytest.raises(BigseqError, match=r"split 'test' not found .* splits there: train, valid"):
        t.load_dataset("test")
    write_fairseq_split(path / "empty", [np.zeros(0, dtype=np.int64)])
    with pytest.raises(BigseqError, match="split 'empty' .* is empty"):
        t.load_dataset("empty")
    (path / "train.bin").write_bytes((path / "train.bin").read_bytes()[:-4])
    with pytest.raises(BigseqError, match="train.bin: .* re-run `bigseq preprocess`"):
        t.load_dataset("train")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "metadata.json").write_text("{}")
    with pytest.raises(BigseqError, match="lacks vocab_size"):
        task(tmp_path / "meta")
