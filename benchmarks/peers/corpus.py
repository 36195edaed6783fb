"""The shared benchmark data: Python stdlib sources -> byte-level BPE ids -> fairseq-preprocess mmap dir.

Every tool trains on the token ids of this one directory: fairseq-train and `bigseq train` read it
directly; the HF Trainer gets the same token stream through `read_token_stream`.
"""

from __future__ import annotations

import json
import subprocess
import sysconfig
from pathlib import Path

import numpy as np

# fairseq's MMapIndexedDataset dtype codes (fairseq/data/indexed_dataset.py)
_DTYPE_OF_CODE = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 8: np.uint16,
                  9: np.uint32, 10: np.uint64}
_IDX_MAGIC = b"MMIDIDX\x00\x00"
FAIRSEQ_SPECIAL_SYMBOLS = 4  # <s>, <pad>, </s>, <unk> precede dict.txt's entries


def stdlib_documents(max_bytes: int) -> list[str]:
    """Source files of this interpreter's standard library (sorted, so the corpus is deterministic)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts)
    documents, total = [], 0
    for path in paths:
        text = path.read_bytes().decode("utf-8", errors="replace").strip()
        if not text:
            continue
        documents.append(text)
        total += len(text)
        if total >= max_bytes:
            break
    return documents


def build_data(work_dir: Path, preprocess_bin: Path, *, max_bytes: int, vocab_size: int) -> dict:
    """Build (or reuse) work_dir/data-bin; return its summary (documents, tokens, vocab size)."""
    data_dir = work_dir / "data-bin"
    summary_path = work_dir / "data-summary.json"
    if summary_path.exists() and (data_dir / "train.idx").exists():
        return json.loads(summary_path.read_text())
    from tokenizers import ByteLevelBPETokenizer  # only needed when the data is (re)built

    documents = stdlib_documents(max_bytes)
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(documents, vocab_size=vocab_size, min_frequency=2, show_progress=False)
    ids_per_doc = [enc.ids for enc in tokenizer.encode_batch(documents)]
    # every 20th document is validation; one document per line, ids as whitespace-separated words
    splits = {"train": [ids for i, ids in enumerate(ids_per_doc) if i % 20 != 0],
              "valid": [ids for i, ids in enumerate(ids_per_doc) if i % 20 == 0]}
    raw_dir = work_dir / "ids"
    raw_dir.mkdir(parents=True, exist_ok=True)
    for split, docs in splits.items():
        (raw_dir / f"{split}.txt").write_text("".join(" ".join(map(str, ids)) + "\n" for ids in docs))
    subprocess.run([str(preprocess_bin), "--only-source", "--dataset-impl", "mmap", "--workers", "2",
                    "--trainpref", str(raw_dir / "train.txt"), "--validpref", str(raw_dir / "valid.txt"),
                    "--destdir", str(data_dir)], check=True, capture_output=True, text=True)
    dict_entries = len((data_dir / "dict.txt").read_text().splitlines())
    summary = {"documents": len(documents), "source_bytes": sum(len(d) for d in documents),
               "train_tokens": int(read_token_stream(data_dir, "train").size),
               "valid_tokens": int(read_token_stream(data_dir, "valid").size),
               "bpe_vocab": tokenizer.get_vocab_size(),
               "dictionary_size": FAIRSEQ_SPECIAL_SYMBOLS + dict_entries}
    summary_path.write_text(json.dumps(summary, indent=1))
    return summary


def read_token_stream(data_dir: Path, split: str) -> np.ndarray:
    """All token ids of a fairseq mmap split in file order (each document ends with </s>), memory-mapped."""
    header = (data_dir / f"{split}.idx").read_bytes()[:18]
    if not header.startswith(_IDX_MAGIC):
        raise ValueError(f"{data_dir / split}.idx is not a fairseq mmap index")
    dtype = _DTYPE_OF_CODE[header[17]]
    return np.memmap(data_dir / f"{split}.bin", dtype=dtype, mode="r")
