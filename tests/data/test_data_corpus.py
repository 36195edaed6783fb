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


def test_each_file_goes_wholly_to_one_split(tmp_path):
    src = tmp_path / "lib"
    (src / "pkg").mkdir(parents=True)
    (src / "test").mkdir()
    (src / "test" / "test_x.py").write_text("skipped = True\n")
    for i in range(60):
        body = "".join(f"x_{i}_{j} = {j}\n" + ("\n" if j % 9 == 8 else "") for j in range(50))
        (src / ("pkg" if i % 2 else "") / f"m{i}.py").write_text(body)
    info = build_stdlib_corpus(str(tmp_path / "out"), train_bytes=10**9, valid_bytes=10**9, stdlib_dir=str(src))
    splits = {name: "".join(read(path)) for name, path in (("train", info.train_path), ("valid", info.valid_path))}
    for i in range(60):
        owners = [name for name, text in splits.items() if f"x_{i}_" in text]
        assert len(owners) == 1 and splits[owners[0]].count(f"x_{i}_") == 50
    assert info.valid_documents > 0 and info.train_documents > info.valid_documents
    assert "skipped" not in splits["train"] + splits["valid"]


def test_split_blocks_cuts_at_blank_lines():
    text = "".join(f"line {i}\n" + ("\n" if i % 5 == 4 else "") for i in range(30))
    blocks = split_blocks(text, min_lines=8, max_lines=12)
    assert "".join(blocks) == text
    assert all(b.endswith("\n\n") for b in blocks[:-1]) and all(b.count("\n") <= 12 for b in blocks)
