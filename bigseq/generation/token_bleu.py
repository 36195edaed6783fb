"""fairseq's token BLEU (``--scoring bleu``, its C ``libbleu``): corpus 4-gram BLEU over token ids.

Per sentence pair: leading pads and trailing pads/eos are trimmed (the first
token always stays); each hypothesis n-gram matches at most as many times as it
occurs in the reference (clipped counts); a reference <unk> never matches (it
becomes -999). Corpus BLEU = BP * exp(mean log precision_n), n = 1..4, with no
smoothing (one empty precision gives 0), BP = min(1, exp(1 - ref_len/sys_len)).
Words work too (``add_words``): fairseq scores detokenized strings by splitting
them on spaces.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Sequence

ORDER = 4


def _trim(seq: list, pad, eos) -> list:
    start = 0
    while start < len(seq) and seq[start] == pad:
        start += 1
    seq = seq[start:]
    end = len(seq) - 1
    while end > 0 and seq[end] in (pad, eos):
        end -= 1
    return seq[:end + 1]


class TokenBleu:
    def __init__(self, pad: int = 1, eos: int = 2, unk: int = 3):
        self.pad, self.eos, self.unk = pad, eos, unk
        self.matches, self.totals = [0] * ORDER, [0] * ORDER
        self.sys_len = self.ref_len = 0

    def add(self, ref: Sequence[int], hyp: Sequence[int]) -> None:
        """One pair of token id sequences (tensors or lists; eos and padding allowed)."""
        ref, hyp = (x.tolist() if hasattr(x, "tolist") else [int(t) for t in x] for x in (ref, hyp))
        ref = [-999 if t == self.unk else t for t in ref]
        self._add(_trim(ref, self.pad, self.eos), _trim(hyp, self.pad, self.eos))

    def add_words(self, ref: str, hyp: str) -> None:
        """One pair of strings, split on whitespace."""
        self._add(ref.split(), hyp.split())

    def _add(self, ref: list[Hashable], hyp: list[Hashable]) -> None:
        self.ref_len += len(ref)
        self.sys_len += len(hyp)
        for n in range(1, ORDER + 1):
            if len(hyp) < n:
                continue
            hyp_grams = Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1))
            ref_grams = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
            self.totals[n - 1] += len(hyp) - n + 1
            self.matches[n - 1] += sum(min(c, ref_grams[g]) for g, c in hyp_grams.items())

    def precisions(self) -> list[float]:
        return [m / t if t > 0 else 0.0 for m, t in zip(self.matches, self.totals)]

    def brevity_penalty(self) -> float:
        return min(1.0, math.exp(1 - self.ref_len / self.sys_len)) if self.sys_len else 0.0

    def score(self) -> float:
        if any(p == 0 for p in self.precisions()):
            return 0.0
        return self.brevity_penalty() * math.exp(sum(map(math.log, self.precisions())) / ORDER) * 100

    def result_string(self) -> str:
        """fairseq's line: ``BLEU4 = 29.29, 60.3/35.0/22.8/15.3 (BP=1.000, ratio=1.004, syslen=.., reflen=..)``."""
        ratio = self.sys_len / self.ref_len if self.ref_len else 0.0
        precisions = "/".join(f"{p * 100:2.1f}" for p in self.precisions())
        return (f"BLEU{ORDER} = {self.score():2.2f}, {precisions} (BP={self.brevity_penalty():.3f}, "
                f"ratio={ratio:.3f}, syslen={self.sys_len}, reflen={self.ref_len})")
