"""fairseq's ``dict.txt``: the vocabulary of data binarized by ``fairseq-preprocess``.

Ids 0-3 are fairseq's special symbols ``<s> <pad> </s> <unk>``; then each line
``token count [#fairseq:overwrite]`` adds the next id, in file order (the
``madeupwordNNNN 0`` lines that pad the vocabulary to a multiple of 8 included).
A flagged line adds a new id even when the token already exists, as fairseq does.

``build`` makes one the way ``fairseq-preprocess`` does (``Dictionary.finalize``):
whitespace tokens counted, sorted by count (ties in code-point order), cut by
threshold and size, padded with ``madeupwordNNNN`` to a multiple of the padding factor.
"""

from __future__ import annotations

import os
from collections import Counter

from bigseq.errors import BigseqError

SPECIAL_SYMBOLS = ("<s>", "<pad>", "</s>", "<unk>")


def tokenize_line(line: str) -> list[str]:
    """fairseq's ``tokenize_line`` (``re.sub(r"\\s+", " ")``, strip, split): the same as ``str.split()``."""
    return line.split()


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

    # building (fairseq-preprocess) ---------------------------------------------------
    @classmethod
    def build(cls, counts: Counter, *, threshold: int = 0, nwords: int = -1, padding_factor: int = 8) -> "Dictionary":
        """fairseq's finalize(): the specials, then tokens by count (descending, ties in code-point order)
        while count >= threshold, at most ``nwords`` ids in all (<= 0: no limit), then padding."""
        symbols, out_counts = list(SPECIAL_SYMBOLS), [0] * len(SPECIAL_SYMBOLS)
        words = sorted((w, c) for w, c in counts.items() if w not in SPECIAL_SYMBOLS)
        limit = len(words) if nwords <= 0 else max(nwords - len(SPECIAL_SYMBOLS), 0)
        for word, count in Counter(dict(words)).most_common(limit):  # most_common is stable on ties
            if count < threshold:
                break
            symbols.append(word)
            out_counts.append(count)
        d = cls(symbols, out_counts)
        d.pad_to_multiple(padding_factor)
        return d

    @classmethod
    def from_vocab(cls, tokens: list[str], counts: list[int], *, padding_factor: int, source: str) -> "Dictionary":
        """A subword vocabulary in id order as a dictionary with the same ids (specials must be at 0-3)."""
        if tuple(tokens[:4]) != SPECIAL_SYMBOLS:
            raise BigseqError(f"{source}: ids 0-3 are {tokens[:4]}, but fairseq's dictionaries fix "
                              f"{' '.join(SPECIAL_SYMBOLS)} there; use a tokenizer with those specials first "
                              "(or train one with --tokenizer train)")
        bad = next((t for t in tokens[4:] if not t or "\n" in t or "\r" in t or t in SPECIAL_SYMBOLS), None)
        if bad is not None:
            raise BigseqError(f"{source}: token {bad!r} cannot be a line of a fairseq dict.txt; "
                              "use another tokenizer (or --tokenizer none on pre-tokenized text)")
        d = cls(list(tokens), [0] * 4 + list(counts[4:]))
        d.pad_to_multiple(padding_factor)
        return d

    def pad_to_multiple(self, padding_factor: int) -> None:
        """Add ``madeupwordNNNN`` (count 0) until the size is a multiple (a name already taken is skipped)."""
        i = 0
        while padding_factor > 1 and len(self) % padding_factor:
            word = f"madeupword{i:04d}"
            if word not in self.indices:
                self.indices[word] = len(self.symbols)
                self.symbols.append(word)
                self.counts.append(0)
            i += 1

    def encode_line(self, line: str) -> tuple[list[int], int]:
        """(ids of the whitespace tokens + eos, how many tokens became <unk>)."""
        unk, get = self.unk_idx, self.indices.get
        words = tokenize_line(line)
        ids = [get(w, unk) for w in words]
        replaced = sum(1 for w, i in zip(words, ids) if i == unk and w != "<unk>") if unk in ids else 0
        ids.append(self.eos_idx)
        return ids, replaced

    def save(self, path: str) -> None:
        """fairseq's dict.txt: ``token count`` per line after the four specials, UTF-8, newline-ended
        (a repeated token, possible only in a loaded file, keeps its ``#fairseq:overwrite`` flag)."""
        seen, lines = set(SPECIAL_SYMBOLS), []
        for word, count in zip(self.symbols[4:], self.counts[4:]):
            lines.append(f"{word} {count}{' #fairseq:overwrite' if word in seen else ''}\n")
            seen.add(word)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(lines)
