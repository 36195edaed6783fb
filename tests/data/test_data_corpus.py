"""The standard-library corpus used by the quickstart: deterministic, split by file, capped."""

import json

from bigseq.data.corpus import build_stdlib_corpus, split_blocks


def read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def test_stdlib_corpus_is_deterministic_and_capped(tmp_path):
    a = build_stdlib_corpus(str(tmp_path / "a"), train_bytes=150_000, valid_bytes=30_000)
    b = build_stdlib_corpus(str(tmp_path / "b"), train_bytes=150_000, valid_bytes=30_000)
    assert open(a.train_path, "rb").read() == open(b.train_path, "rb").read()
    assert open(a.valid_path, "rb").read() == open(b.valid_path, "rb").read()
    train, valid = read(a.train_path), read(a.valid_path)
    assert len(train) == a.train_documents > 10 and len(valid) == a.valid_documents > 2
    assert 150_000 <= a.train_bytes < 150_000 + 2_000_000 and 30_000 <= a.valid_bytes
    assert all(doc.strip() for doc in train + valid) and any("def " in doc for doc in train)
    assert not set(train) & set(valid) - {""} or len(set(train) & set(valid)) < 3  # split by file, not by line


def test_split_blocks_cuts_at_blank_lines():
    text = "".join(f"line {i}\n" + ("\n" if i % 5 == 4 else "") for i in range(30))
    blocks = split_blocks(text, min_lines=8, max_lines=12)
    assert "".join(blocks) == text
    assert all(b.endswith("\n\n") for b in blocks[:-1]) and all(b.count("\n") <= 12 for b in blocks)
