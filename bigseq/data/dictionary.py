"""fairseq's ``dict.txt``: the vocabulary of data binarized by ``fairseq-preprocess``.

Ids 0-3 are fairseq's special symbols ``<s> <pad> </s> <unk>``; then each line
``token count [#fairseq:overwrite]`` adds the next id, in file order (the
``madeupwordNNNN 0`` lines that pad the vocabulary to a multiple of 8 included).
A flagged line adds a new id even when the token already exists, as fairseq does.
"""

from __future__ import annotations

import os

from bigseq.errors import BigseqError

SPECIAL_SYMBOLS = ("<s>", "<pad>", "</s>", "<unk>")


class Dictionary:
    def __init__(self, symbols: list[str], counts: list[int]):
        self.symbols = symbols
        self.counts = counts
        self.indices = {}
        for i, sym in enumerate(symbols):
            self.indices[sym] = i  # a later overwrite wins, like fairseq's add_symbol
        self.bos_idx, self.pad_idx, self.eos_idx, self.unk_idx = 0, 1, 2, 3

    @classmethod
    def load(cls, path: str) -> "Dictionary":
        if not os.path.isfile(path):
            raise BigseqError(f"{path}: dictionary not found; binarize the data with `bigseq preprocess` "
                              "(or fairseq-preprocess --only-source --dataset-impl mmap)")
        symbols, counts = list(SPECIAL_SYMBOLS), [0] * len(SPECIAL_SYMBOLS)
        seen = set(symbols)
        with open(path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                word, overwrite, count = cls._parse_line(line, path, lineno)
                if word in seen and not overwrite:
                    raise BigseqError(f"{path}:{lineno}: duplicate token {word!r}; fix the dictionary "
                                      "(or flag the line with #fairseq:overwrite)")
                seen.add(word)
                symbols.append(word)
                counts.append(count)
        return cls(symbols, counts)

    @staticmethod
    def _parse_line(line: str, path: str, lineno: int) -> tuple[str, bool, int]:
        try:
            word, field = line.rsplit(" ", 1)
            overwrite = field == "#fairseq:overwrite"
            if overwrite:
                word, field = word.rsplit(" ", 1)
            return word, overwrite, int(field)
        except ValueError:
            raise BigseqError(f"{path}:{lineno}: expected '<token> <count> [#fairseq:overwrite]', "
                              f"got {line!r}; the dictionary is corrupt, re-run preprocessing") from None

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def index(self, symbol: str) -> int:
        return self.indices.get(symbol, self.unk_idx)
