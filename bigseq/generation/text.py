"""Ids <-> text the way fairseq-generate prints them, for one side of a translation task.

``tokens(ids)`` is fairseq's ``Dictionary.string`` + ``--post-process``: the
dictionary's symbols joined by spaces (eos, bos and pad left out), subword
markers removed. ``detok(ids)`` is the text a reader sees (fairseq's D- line):
the tokenizer's decoding when the data was binarized with one (bigseq
preprocess --tokenizer), else the post-processed tokens. ``encode(line)`` is what
bigseq preprocess did to the line: the tokenizer's ids or the dictionary's
whitespace tokens, then eos.
"""

from __future__ import annotations

from typing import Sequence

from bigseq.errors import BigseqError

POST_PROCESS = ("sentencepiece", "subword_nmt", "@@ ", "@@", "wordpiece", "letter", "_EOW", "none")


def post_process(sentence: str, symbol: str | None) -> str:
    """fairseq's ``data_utils.post_process``: undo the subword segmentation named by ``symbol``."""
    if symbol is None or symbol == "none":
        return sentence
    if symbol == "sentencepiece":
        return sentence.replace(" ", "").replace("\u2581", " ").strip()
    if symbol in ("wordpiece", "letter", "_EOW"):
        marker = {"wordpiece": "_", "letter": "|", "_EOW": "_EOW"}[symbol]
        return sentence.replace(" ", "").replace(marker, " ").strip()
    if symbol in ("subword_nmt", "@@ ", "@@"):
        marker = "@@ " if symbol == "subword_nmt" else symbol
        return (sentence + " ").replace(marker, "").rstrip()
    raise BigseqError(f"--post-process {symbol!r}: use one of {', '.join(repr(s) for s in POST_PROCESS)}")


class SideText:
    def __init__(self, dictionary, tokenizer=None, symbol: str | None = None):
        """dictionary: a bigseq Dictionary (symbols, pad/eos/unk ids); tokenizer: the bigseq Tokenizer the
        side was binarized with, or None (whitespace tokens); symbol: the --post-process one."""
        post_process("", symbol)  # an unknown name fails here, before anything is generated
        self.dictionary, self.tokenizer, self.symbol = dictionary, tokenizer, symbol
        d = dictionary
        self.skip = {d.eos_idx, d.pad_idx, getattr(d, "bos_idx", None)}

    def tokens(self, ids: Sequence[int], *, unk_string: str | None = None, escape_unk: bool = False) -> str:
        """unk as ``unk_string``, else ``<<unk>>`` when escaped (a reference's: it never matches a hypothesis)."""
        d = self.dictionary
        unk = unk_string if unk_string is not None else ("<<unk>>" if escape_unk else d.symbols[d.unk_idx])
        words = [unk if i == d.unk_idx else d.symbols[i] for i in _ints(ids) if i not in self.skip]
        return post_process(" ".join(words), self.symbol)

    def detok(self, ids: Sequence[int], **unk) -> str:
        if self.tokenizer is None:
            return self.tokens(ids, **unk)
        return self.tokenizer.decode([i for i in _ints(ids) if i not in self.skip])

    def encode(self, line: str) -> list[int]:
        if self.tokenizer is not None:
            return list(self.tokenizer.encode(line)) + [self.dictionary.eos_idx]
        d = self.dictionary  # fairseq's encode_line: whitespace tokens, unknown ones as unk
        return [d.index(w) for w in line.split()] + [d.eos_idx]


def _ints(ids) -> list[int]:
    """A tensor (one device sync, not one per token) or a sequence of ids -> list of ints."""
    return ids.tolist() if hasattr(ids, "tolist") else [int(i) for i in ids]
