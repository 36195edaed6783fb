"""`bigseq preprocess -s/-t`: fairseq-preprocess's files byte for byte, subword mode, and bad input.

The expected bytes come from a reference written here from fairseq's documented formats
(dictionary.py finalize/save, indexed_dataset.py's mmap index without document index).
"""

import json
import os
import struct
from collections import Counter

import numpy as np
import pytest

from bigseq.cli.main import main as bigseq_main
from bigseq.cli.preprocess import main as preprocess_main
from bigseq.data import text_lines
from bigseq.data.dictionary import Dictionary
from bigseq.data.indexed_dataset import MMapIndexedDataset, fairseq_dtype
from bigseq.data.tokenizer import Tokenizer
from bigseq.errors import BigseqError

DE = ["der Hund  läuft", "die Katze\tschläft", "", "der Hund und die Katze", "ein <unk> Hund", "zz yy xx"]
EN = ["the dog runs", "the cat sleeps", "", "the dog and the cat", "a <unk> dog", "zz yy xx"]


def reference_dict(lines, threshold=0, nwords=-1, padding_factor=8):
    """fairseq's Dictionary.finalize: count desc, ties by token; threshold; nwords (specials count); madeupwords."""
    counts = Counter(w for line in lines for w in line.split() if w not in ("<s>", "<pad>", "</s>", "<unk>"))
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if nwords > 0:
        items = items[:nwords - 4]
    items = [(w, c) for w, c in items if c >= threshold]
    items += [(f"madeupword{i:04d}", 0) for i in range(-(4 + len(items)) % padding_factor)]
    return items


def reference_ids(line, items):
    index = {w: i + 4 for i, (w, _) in enumerate(items)}
    return [index.get(w, 3) for w in line.split()] + [2]


def reference_idx_bytes(sizes, code, itemsize):
    """fairseq MMapIndexedDataset.Index: magic, version, dtype code, N, int32 sizes, int64 byte pointers."""
    pointers = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) * itemsize
    return (b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", code) + struct.pack("<Q", len(sizes))
            + np.asarray(sizes, "<i4").tobytes() + pointers.astype("<i8").tobytes())


def write(path, lines, newline="\n"):
    path.write_bytes(newline.join(lines).encode() + newline.encode())


def run(argv):
    preprocess_main([str(a) for a in argv])


@pytest.fixture
def corpus(tmp_path):
    for split, n in (("train", 6), ("valid", 2), ("test", 3)):
        write(tmp_path / f"{split}.de", DE[:n], "\r\n" if split == "valid" else "\n")
        write(tmp_path / f"{split}.en", EN[:n])
    return tmp_path


def test_whitespace_mode_is_byte_identical_to_fairseq(corpus):
    out = corpus / "bin"
    run(["-s", "de", "-t", "en", "--trainpref", corpus / "train", "--validpref", f"{corpus}/valid,{corpus}/test",
         "--testpref", corpus / "test", "--destdir", out])
    names = {f"{s}.de-en.{lang}.{e}" for s in ("train", "valid", "valid1", "test") for lang in ("de", "en")
             for e in ("bin", "idx")}
    assert set(os.listdir(out)) == names | {"dict.de.txt", "dict.en.txt", "preprocess.log", "metadata.json"}
    for lang, lines in (("de", DE), ("en", EN)):
        items = reference_dict(lines)
        assert (out / f"dict.{lang}.txt").read_bytes() == "".join(f"{w} {c}\n" for w, c in items).encode()
        for split, n in (("train", 6), ("valid", 2), ("valid1", 3), ("test", 3)):
            ids = [reference_ids(line, items) for line in lines[:n]]
            prefix = f"{out}/{split}.de-en.{lang}"
            assert open(prefix + ".idx", "rb").read() == reference_idx_bytes([len(x) for x in ids], 8, 2)
            assert open(prefix + ".bin", "rb").read() == np.asarray(sum(ids, []), "<u2").tobytes()
    log = (out / "preprocess.log").read_text().splitlines()
    assert "[de] Dictionary: 16 types" in log
    assert f"[en] {corpus}/train.en: 6 sents, 23 tokens, 0.0% replaced (by <unk>)" in log
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["joined_dictionary"] is False and meta["tokenizer"]["mode"] == "none"
    assert not [n for n in os.listdir(out) if n.startswith(".")]


def test_dictionary_options_and_reuse(corpus):
    out = corpus / "j"
    run(["-s", "de", "-t", "en", "--trainpref", corpus / "train", "--destdir", out, "--joined-dictionary",
         "--thresholdsrc", "2", "--padding-factor", "4"])
    items = reference_dict(DE + EN, threshold=2, padding_factor=4)
    assert (out / "dict.de.txt").read_bytes() == (out / "dict.en.txt").read_bytes()
    assert (out / "dict.de.txt").read_text() == "".join(f"{w} {c}\n" for w, c in items)
    replaced = sum(1 for line in DE for w in line.split() if w not in dict(items) and w != "<unk>")
    assert f"{replaced / 23 * 100:.3}% replaced" in (out / "preprocess.log").read_text()
    out2 = corpus / "n"
    run(["-s", "de", "-t", "en", "--trainpref", corpus / "train", "--destdir", out2, "--nwordssrc", "6",
         "--nwordstgt", "9", "--padding-factor", "1"])
    assert len(Dictionary.load(str(out2 / "dict.de.txt"))) == 6 and len(Dictionary.load(str(out2 / "dict.en.txt"))) == 9
    out3 = corpus / "reuse"  # --srcdict/--tgtdict: the dictionaries are kept, only the data is binarized
    run(["-s", "de", "-t", "en", "--validpref", corpus / "valid", "--destdir", out3, "--srcdict", out / "dict.de.txt",
         "--tgtdict", out2 / "dict.en.txt"])
    assert (out3 / "dict.de.txt").read_bytes() == (out / "dict.de.txt").read_bytes()
    assert MMapIndexedDataset(str(out3 / "valid.de-en.en"))[0].tolist() == \
        [Dictionary.load(str(out2 / "dict.en.txt")).index(w) for w in EN[0].split()] + [2]


def test_workers_and_large_vocabularies(corpus, monkeypatch):
    monkeypatch.setattr(text_lines, "CHUNK_BYTES", 16)  # many byte ranges: lines cross no range boundary
    run(["-s", "de", "-t", "en", "--trainpref", corpus / "train", "--destdir", corpus / "w1"])
    run(["-s", "de", "-t", "en", "--trainpref", corpus / "train", "--destdir", corpus / "w2", "--workers", "2"])
    for name in ("dict.de.txt", "train.de-en.de.bin", "train.de-en.de.idx"):
        assert (corpus / "w1" / name).read_bytes() == (corpus / "w2" / name).read_bytes()
    assert [fairseq_dtype(n) for n in (65499, 65500, 2**32)] == [np.uint16, np.uint32, np.int64]
    (corpus / "big.de").write_text(" ".join(f"w{i}" for i in range(65500)) + "\n")
    (corpus / "big.en").write_text("x\n")
    run(["-s", "de", "-t", "en", "--trainpref", corpus / "big", "--destdir", corpus / "big"])
    assert (corpus / "big" / "train.de-en.de.idx").read_bytes()[17] == 9  # uint32, fairseq's code
    ds = MMapIndexedDataset(str(corpus / "big" / "train.de-en.de"))
    assert ds.dtype == np.uint32 and len(ds[0]) == 65501 and ds[0][-1] == 2


def test_trained_tokenizer_mode_writes_its_vocabulary_as_dicts(corpus):
    out = corpus / "bpe"
    run(["-s", "de", "-t", "en", "--trainpref", corpus / "train", "--validpref", corpus / "valid",
         "--destdir", out, "--tokenizer", "train", "--joined-dictionary", "--vocab-size", "300"])
    tok = Tokenizer.load(str(out))
    d = Dictionary.load(str(out / "dict.de.txt"))
    vocab = tok.hf.get_vocab_size()
    assert (out / "dict.en.txt").read_bytes() == (out / "dict.de.txt").read_bytes() and len(d) % 8 == 0
    assert d.symbols[:vocab] == [tok.hf.id_to_token(i) for i in range(vocab)]
    counts = np.zeros(len(d), dtype=np.int64)
    for lang, lines in (("de", DE), ("en", EN)):
        ds = MMapIndexedDataset(str(out / f"train.de-en.{lang}"))
        assert [ds[i].tolist() for i in range(len(ds))] == [tok.encode(line) + [2] for line in lines]
        counts += np.bincount(ds.tokens, minlength=len(d))
    assert d.counts[4:] == counts[4:].tolist()
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["joined_dictionary"] and meta["tokenizer"] == {"mode": "train", "files": {"de": ".", "en": "."},
                                                               "source": None}
    loaded = corpus / "loaded"  # the same tokenizer loaded gives the same data
    run(["-s", "de", "-t", "en", "--trainpref", corpus / "train", "--destdir", loaded, "--tokenizer-dir", out])
    assert (loaded / "train.de-en.en.bin").read_bytes() == (out / "train.de-en.en.bin").read_bytes()
    sep = corpus / "sep"
    run(["-s", "de", "-t", "en", "--trainpref", corpus / "train", "--destdir", sep, "--tokenizer", "train",
         "--nwordssrc", "270", "--nwordstgt", "280"])
    assert {"tokenizer.de", "tokenizer.en"} <= set(os.listdir(sep))
    assert Tokenizer.load(str(sep / "tokenizer.de")).encode(DE[0]) + [2] == \
        MMapIndexedDataset(str(sep / "train.de-en.de"))[0].tolist()


def test_bad_input_is_one_line_and_writes_nothing(corpus, capsys):
    base = ["-s", "de", "-t", "en", "--trainpref", corpus / "train", "--destdir", corpus / "out"]
    write(corpus / "short.de", DE[:2])
    write(corpus / "short.en", EN[:3])
    (corpus / "lonely.de").write_text("x\n")
    (corpus / "out").mkdir()
    cases = [
        (["--validpref", corpus / "lonely"], f"{corpus}/lonely.en: file not found"),
        (["--validpref", corpus / "short"], f"{corpus}/short.de has 2 lines but {corpus}/short.en has 3"),
        (["--joined-dictionary", "--srcdict", "a", "--tgtdict", "b"], "cannot use both --srcdict and --tgtdict"),
        (["--vocab-size", "300"], "--vocab-size sizes a trained tokenizer"),
        (["--tokenizer", "train", "--thresholdsrc", "2"], "for whitespace dictionaries"),
        (["--srcdict", corpus / "nope.txt"], "nope.txt: dictionary not found"),
    ]
    for extra, message in cases:
        with pytest.raises(BigseqError) as e:
            run(base + extra)
        assert message in str(e.value)
    with pytest.raises(BigseqError, match="for parallel text only; add -s SRC -t TGT"):
        run(["--trainpref", corpus / "train.de", "--joined-dictionary"])
    assert os.listdir(corpus / "out") == []
    (corpus / "out" / "dict.en.txt").write_text("a 1\n")  # as fairseq: never overwrite a dictionary
    with pytest.raises(BigseqError, match=r"dict.en.txt already exists .* with --tgtdict"):
        run(base)
    assert os.listdir(corpus / "out") == ["dict.en.txt"]
    os.remove(corpus / "out" / "dict.en.txt")
    rc = bigseq_main(["preprocess"] + [str(a) for a in base + ["--validpref", corpus / "short"]])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "short.en has 3" in err


def test_a_tokenizer_without_fairseq_specials_is_refused_midway(corpus, tmp_path):
    from tokenizers import Tokenizer as HF
    from tokenizers import models, pre_tokenizers
    hf = HF(models.WordLevel({"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "the": 4}, unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    (tmp_path / "tok").mkdir()
    hf.save(str(tmp_path / "tok" / "tokenizer.json"))
    dest = corpus / "out"
    with pytest.raises(BigseqError, match=r"ids 0-3 are \['<pad>', '<s>', '</s>', '<unk>'\], but fairseq"):
        run(["-s", "de", "-t", "en", "--trainpref", corpus / "train", "--destdir", dest, "--tokenizer-dir",
             tmp_path / "tok"])
    assert os.listdir(dest) == []  # the staging folder is gone too
