"""`bigseq preprocess` end to end: text (bad bytes, empty lines), json:, parquet:, saved datasets, errors."""

import json
import os

import pytest

from bigseq.cli.preprocess import main as preprocess_main
from bigseq.data.indexed_dataset import MMapIndexedDataset
from bigseq.data.tokenizer import Tokenizer
from bigseq.errors import BigseqError

TRAIN_LINES = [b"first document here", b"", b"second \xff\xfe document", b"   ", b"third one, caf\xc3\xa9",
               b"def f(x):  return x * 2"] * 10
VALID_LINES = [b"a valid line", b"another valid line"]


def main(argv):
    """Run `bigseq preprocess ARGV`; returns the metadata.json it wrote."""
    preprocess_main(argv)
    return json.loads(open(os.path.join(argv[argv.index("--destdir") + 1], "metadata.json")).read())


def docs_of(prefix):
    ds = MMapIndexedDataset(prefix)
    return [ds[i].tolist() for i in range(len(ds))]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pp")
    (root / "train.txt").write_bytes(b"\n".join(TRAIN_LINES) + b"\n")
    (root / "valid.txt").write_bytes(b"\r\n".join(VALID_LINES))  # CRLF, no final newline
    meta = main(["--trainpref", str(root / "train.txt"), "--validpref", str(root / "valid.txt"),
                 "--testpref", str(root / "valid.txt"), "--destdir", str(root / "bin"), "--vocab-size", "300"])
    return root, meta


def test_text_end_to_end(text_run, capsys):
    root, meta = text_run
    out = root / "bin"
    assert sorted(os.listdir(out)) == sorted(["metadata.json", "tokenizer.json", "tokenizer_config.json"] +
                                             [f"{s}.{e}" for s in ("train", "valid", "test") for e in ("bin", "idx")])
    train = meta["splits"]["train"]
    assert (train["documents"], train["empty_skipped"], train["invalid_utf8_bytes"]) == (40, 20, 20)
    assert meta["splits"]["valid"]["documents"] == 2 and meta["splits"]["valid"]["invalid_utf8_bytes"] == 0
    assert (meta["pad_idx"], meta["eos_idx"], meta["bos_idx"], meta["unk_idx"]) == (1, 2, 0, 3)
    assert meta["dtype"] == "uint16" and meta["tokenizer"]["kind"] == "byte_bpe"
    tok = Tokenizer.load(str(out))
    assert tok.vocab_size == meta["vocab_size"]
    expected = [tok.encode(line.decode("utf-8", "replace")) + [2] for line in TRAIN_LINES if line.strip()]
    assert docs_of(str(out / "train")) == expected
    assert "\ufffd" in tok.decode(expected[1])
    assert docs_of(str(out / "valid")) == [tok.encode(t.decode()) + [2] for t in VALID_LINES]
    assert train["tokens"] == sum(map(len, expected))
    assert not [n for n in os.listdir(out) if n.startswith(".preprocess-")]  # staging removed


def test_summary_is_printed(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("one line\n\ntwo line\n")
    main(["--trainpref", str(tmp_path / "t.txt"), "--destdir", str(tmp_path / "b"), "--vocab-size", "280"])
    out = capsys.readouterr().out
    assert "train: 2 documents" in out and "skipped 1 empty" in out and "tokens/s" in out


def test_json_parquet_and_saved_dataset_give_the_same_data(text_run, tmp_path):
    import datasets
    root, _ = text_run
    texts = ["alpha beta gamma", "", "delta\nepsilon (newline kept)", None, "zeta"]
    with open(tmp_path / "a.jsonl", "w") as f:
        for t in texts[:3]:
            f.write(json.dumps({"body": t, "id": 1}) + "\n")
    with open(tmp_path / "b.jsonl", "w") as f:
        for t in texts[3:]:
            f.write(json.dumps({"body": t, "id": 2}) + "\n")
    ds = datasets.Dataset.from_dict({"body": texts})
    ds.to_parquet(str(tmp_path / "p.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    tok_dir = str(root / "bin")
    tok = Tokenizer.load(tok_dir)
    expected = [tok.encode(t) + [2] for t in texts if t]
    for n, spec in enumerate((f"json:{tmp_path}/*.jsonl", f"parquet:{tmp_path}/p.parquet", str(tmp_path / "saved"),
                              str(tmp_path / "p.parquet"))):
        dest = tmp_path / f"out{n}"
        meta = main(["--trainpref", spec, "--destdir", str(dest), "--tokenizer-dir", tok_dir,
                     "--text-column", "body"])
        assert docs_of(str(dest / "train")) == expected, spec
        assert meta["splits"]["train"]["empty_skipped"] == 2 and meta["tokenizer"]["kind"] == "byte_bpe"


def test_two_workers_give_identical_output(text_run, tmp_path):
    root, _ = text_run
    main(["--trainpref", str(root / "train.txt"), "--destdir", str(tmp_path / "w2"), "--workers", "2",
          "--tokenizer-dir", str(root / "bin")])
    assert (tmp_path / "w2" / "train.bin").read_bytes() == (root / "bin" / "train.bin").read_bytes()
    assert (tmp_path / "w2" / "train.idx").read_bytes() == (root / "bin" / "train.idx").read_bytes()


def test_input_errors(tmp_path, capsys):
    (tmp_path / "blank.txt").write_text("\n  \n\n")
    (tmp_path / "ok.txt").write_text("some text\n")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "r.jsonl").write_text(json.dumps({"content": "x"}) + "\n")
    cases = [
        (["--trainpref", str(tmp_path / "missing.txt")], "no such file"),
        (["--trainpref", f"json:{tmp_path}/nothing*.json"], "no such file"),
        (["--trainpref", str(tmp_path / "blank.txt")], "no non-empty documents"),
        (["--trainpref", str(tmp_path / "ok.txt"), "--destdir", str(tmp_path / "afile" / "sub")], "cannot write"),
        (["--trainpref", str(tmp_path / "ok.txt"), "--vocab-size", "300", "--tokenizer-dir", "x"], "give only one"),
        (["--trainpref", f"json:{tmp_path}/r.jsonl"], "no column 'text' (columns: content)"),
        (["--trainpref", f"parquet:{tmp_path}/r.jsonl"], "could not read it as parquet"),
        (["--validpref", str(tmp_path / "ok.txt")], "--trainpref is required"),
    ]
    for argv, message in cases:
        argv = argv if "--destdir" in argv else argv + ["--destdir", str(tmp_path / "out")]
        with pytest.raises(BigseqError, match=message.replace("(", r"\(").replace(")", r"\)")):
            main(argv + ([] if "--vocab-size" in argv or "--validpref" in argv else ["--vocab-size", "270"]))
    assert not os.path.exists(tmp_path / "out" / "metadata.json")
    with pytest.raises(SystemExit):
        main(["--trainpref", "x", "--vocab-sise", "3"])
    assert "did you mean '--vocab-size'" in capsys.readouterr().err


def test_failed_run_keeps_the_previous_data_dir(text_run, tmp_path):
    root, _ = text_run
    (tmp_path / "blank.txt").write_text("\n\n")
    dest = root / "bin"
    before = {n: (dest / n).read_bytes() for n in os.listdir(dest)}
    with pytest.raises(BigseqError, match="no non-empty documents"):
        main(["--trainpref", str(root / "valid.txt"), "--validpref", str(tmp_path / "blank.txt"),
              "--destdir", str(dest), "--vocab-size", "270"])
    assert {n: (dest / n).read_bytes() for n in os.listdir(dest)} == before
