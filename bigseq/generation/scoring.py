"""BLEU with sacrebleu on detokenized text (with its signature), and the --eval-bleu statistics.

``corpus_bleu`` is what ``bigseq generate --scoring sacrebleu`` and ``bigseq
score`` print. ``eval_bleu_statistics`` is the translation task's --eval-bleu
step: it translates one validation batch and returns sacrebleu's sufficient
statistics, which sum over batches and ranks; ``BleuStats.bleu()`` turns the sum
into corpus BLEU as fairseq does (``BLEU.compute_bleu(..., smooth_method="exp")``).
Only sacrebleu's offline tokenizers are offered (the spm ones download a model).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bigseq.errors import BigseqError

SACREBLEU_TOKENIZERS = ("13a", "intl", "char", "none", "zh")
ORDER = 4
# fairseq's unk strings for --eval-bleu: sacrebleu would split "<unk>" into "< unk >" and match it
UNK_IN_HYP, UNK_IN_REF = "UNKNOWNTOKENINHYP", "UNKNOWNTOKENINREF"


def _bleu_metric(tokenize: str, lowercase: bool = False):
    import sacrebleu
    if tokenize not in SACREBLEU_TOKENIZERS:
        raise BigseqError(f"--sacrebleu-tokenizer {tokenize!r}: use one of {', '.join(SACREBLEU_TOKENIZERS)}")
    return sacrebleu.BLEU(tokenize=tokenize, lowercase=lowercase)


def corpus_bleu(hyps: list[str], refs: list[str], *, tokenize: str = "13a", lowercase: bool = False):
    """-> (sacrebleu BLEUScore, its signature string), one reference per hypothesis."""
    if len(hyps) != len(refs):
        raise BigseqError(f"{len(hyps)} hypotheses but {len(refs)} references; BLEU needs one reference per line")
    metric = _bleu_metric(tokenize, lowercase)
    return metric.corpus_score(hyps, [refs]), str(metric.get_signature())


def sentence_bleus(hyps: list[str], refs: list[str], *, tokenize: str = "13a", lowercase: bool = False):
    """Each line's own BLEU (sacrebleu's sentence_score, smoothed with exp as sacrebleu defaults)."""
    metric = _bleu_metric(tokenize, lowercase)
    return [metric.sentence_score(h, [r]) for h, r in zip(hyps, refs)]


@dataclass
class BleuStats:
    """sacrebleu's sufficient statistics: n-gram matches and totals (n = 1..4), system and reference lengths."""

    counts: list[int] = field(default_factory=lambda: [0] * ORDER)
    totals: list[int] = field(default_factory=lambda: [0] * ORDER)
    sys_len: int = 0
    ref_len: int = 0

    def __add__(self, other: "BleuStats") -> "BleuStats":
        return BleuStats([a + b for a, b in zip(self.counts, other.counts)],
                         [a + b for a, b in zip(self.totals, other.totals)],
                         self.sys_len + other.sys_len, self.ref_len + other.ref_len)

    def logging_output(self) -> dict[str, int]:
        """fairseq's keys (_bleu_counts_i, _bleu_totals_i, _bleu_sys_len, _bleu_ref_len): sums across ranks."""
        out = {f"_bleu_counts_{i}": c for i, c in enumerate(self.counts)}
        out.update({f"_bleu_totals_{i}": t for i, t in enumerate(self.totals)})
        return {**out, "_bleu_sys_len": self.sys_len, "_bleu_ref_len": self.ref_len}

    @classmethod
    def from_logging_output(cls, log: dict) -> "BleuStats":
        return cls([int(log[f"_bleu_counts_{i}"]) for i in range(ORDER)],
                   [int(log[f"_bleu_totals_{i}"]) for i in range(ORDER)],
                   int(log["_bleu_sys_len"]), int(log["_bleu_ref_len"]))

    def bleu(self) -> float:
        """Corpus BLEU of everything summed here (0 when nothing was translated)."""
        from sacrebleu.metrics import BLEU
        if self.sys_len == 0:
            return 0.0
        return BLEU.compute_bleu(correct=self.counts, total=self.totals, sys_len=self.sys_len,
                                 ref_len=self.ref_len, smooth_method="exp").score


def detokenizer(detok: str = "space", detok_args: dict | None = None):
    """--eval-bleu-detok: space (the text as it is) or moses (sacremoses, {"target_lang": "de"})."""
    if detok == "space":
        return lambda text: text
    if detok == "moses":
        try:
            from sacremoses import MosesDetokenizer
        except ImportError:
            raise BigseqError("--eval-bleu-detok moses needs sacremoses: pip install sacremoses") from None
        moses = MosesDetokenizer(lang=(detok_args or {}).get("target_lang", "en"))
        return lambda text: moses.detokenize(text.split())
    raise BigseqError(f"--eval-bleu-detok {detok!r} is not supported here; use space or moses")


def eval_bleu_statistics(model, batch, *, generation: dict, target_dictionary, target_tokenizer=None,
                         remove_bpe: str | None = None, tokenized: bool = False, print_samples: bool = False,
                         detok: str = "space", detok_args: dict | None = None) -> BleuStats:
    """fairseq's ``_inference_with_bleu`` for one batch: beam search with ``generation`` (the
    --eval-bleu-args JSON, BeamSearchConfig's field names), the best hypothesis of each sentence
    and its reference decoded to text (unk spelled so it never matches, --eval-bleu-remove-bpe,
    then the tokenizer or ``detok``), sacrebleu's 13a statistics (``tokenized``: tokenize="none",
    fairseq's --eval-tokenized-bleu). The keywords after target_tokenizer are the translation
    task's ``eval_bleu_settings()``."""
    from bigseq.generation.beam_search import BeamSearchGenerator
    from bigseq.generation.config import BeamSearchConfig
    from bigseq.generation.text import SideText
    try:
        cfg = BeamSearchConfig(**generation)
    except TypeError as e:
        raise BigseqError(f"--eval-bleu-args {generation}: {e}; use generation flag names like beam, "
                          "max_len_a, max_len_b, lenpen") from None
    d, detokenize = target_dictionary, detokenizer(detok, detok_args)
    generator = BeamSearchGenerator(model, cfg, eos_idx=d.eos_idx, pad_idx=d.pad_idx, unk_idx=d.unk_idx,
                                    vocab_size=len(d))
    keep = batch.ids >= 0  # a rank left without samples holds one filler row
    if not bool(keep.any()):
        return BleuStats()
    hyps_out = generator.generate(batch.src_tokens[keep], batch.src_lengths[keep])
    text = SideText(d, target_tokenizer, remove_bpe)
    hyps = [detokenize(text.detok(h[0].tokens, unk_string=UNK_IN_HYP)) for h in hyps_out]
    refs = [detokenize(text.detok(t[t.ne(d.pad_idx)], unk_string=UNK_IN_REF)) for t in batch.targets[keep]]
    if print_samples and hyps:
        print(f"example hypothesis: {hyps[0]}\nexample reference: {refs[0]}", flush=True)
    score = _bleu_metric("none" if tokenized else "13a").corpus_score(hyps, [refs])
    return BleuStats(list(score.counts), list(score.totals), score.sys_len, score.ref_len)
