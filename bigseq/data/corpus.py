"""A small real corpus with no download: the interpreter's own standard library sources.

``build_stdlib_corpus(dest)`` writes ``train.jsonl`` and ``valid.jsonl`` (one
``{"text": ...}`` document per line, so documents keep their newlines) for
``bigseq preprocess --trainpref json:DEST/train.jsonl --validpref json:DEST/valid.jsonl``.
Files are taken in the order of a hash of their relative path (deterministic,
unbiased by the alphabet), a file goes to valid when its hash says so, and each
document is a block of lines ending at a blank line.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
from dataclasses import dataclass

_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "lib2to3"}


@dataclass
class CorpusInfo:
    train_path: str
    valid_path: str
    train_documents: int
    valid_documents: int
    train_bytes: int
    valid_bytes: int


def _stdlib_files(root: str) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        found.extend(os.path.relpath(os.path.join(dirpath, f), root) for f in filenames if f.endswith(".py"))
    return found


def _hash(relpath: str) -> int:
    return int.from_bytes(hashlib.sha1(relpath.replace(os.sep, "/").encode()).digest()[:8], "little")


def split_blocks(text: str, *, min_lines: int = 20, max_lines: int = 80) -> list[str]:
    """Cut a file into blocks of lines: at the first blank line after ``min_lines``, at most ``max_lines``."""
    blocks, current = [], []
    for line in text.splitlines(keepends=True):
        current.append(line)
        if (len(current) >= min_lines and not line.strip()) or len(current) >= max_lines:
            blocks.append("".join(current))
            current = []
    if current:
        blocks.append("".join(current))
    return [b for b in blocks if b.strip()]


def build_stdlib_corpus(dest_dir: str, *, train_bytes: int = 4_000_000, valid_bytes: int = 300_000,
                        valid_every: int = 10, stdlib_dir: str | None = None) -> CorpusInfo:
    """Write DEST/train.jsonl (~train_bytes) and DEST/valid.jsonl (~valid_bytes) of stdlib source blocks."""
    root = stdlib_dir or sysconfig.get_paths()["stdlib"]
    os.makedirs(dest_dir, exist_ok=True)
    files = sorted(_stdlib_files(root), key=lambda p: (_hash(p), p))
    budgets = {"train": train_bytes, "valid": valid_bytes}
    docs: dict[str, list[str]] = {"train": [], "valid": []}
    used = {"train": 0, "valid": 0}
    for rel in files:
        split = "valid" if _hash(rel) % valid_every == 0 else "train"
        if used[split] >= budgets[split]:
            if all(used[s] >= budgets[s] for s in budgets):
                break
            continue
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            blocks = split_blocks(f.read())
        docs[split].extend(blocks)
        used[split] += sum(len(b.encode("utf-8")) for b in blocks)

    paths = {}
    for split, blocks in docs.items():
        path = os.path.join(dest_dir, f"{split}.jsonl")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            for block in blocks:
                f.write(json.dumps({"text": block}, ensure_ascii=False) + "\n")
        os.replace(path + ".tmp", path)
        paths[split] = path
    return CorpusInfo(paths["train"], paths["valid"], len(docs["train"]), len(docs["valid"]),
                      used["train"], used["valid"])


if __name__ == "__main__":  # python -m bigseq.data.corpus DEST_DIR
    info = build_stdlib_corpus(sys.argv[1] if len(sys.argv) > 1 else "quickstart/corpus")
    print(f"wrote {info.train_path} ({info.train_documents} docs, {info.train_bytes / 1e6:.1f} MB) and "
          f"{info.valid_path} ({info.valid_documents} docs, {info.valid_bytes / 1e3:.0f} KB)")
