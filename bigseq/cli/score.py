"""`bigseq score --sys hyp.txt --ref ref.txt`: corpus BLEU of a file of hypotheses (fairseq-score).

sacrebleu on the detokenized lines (its signature printed) unless --tokenized-bleu:
fairseq's token BLEU over whitespace tokens. --sentence-bleu prints each line's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bigseq.config import FlagParser, add_dataclass_args
from bigseq.errors import BigseqError
from bigseq.generation.scoring import corpus_bleu, sentence_bleus
from bigseq.generation.token_bleu import TokenBleu


@dataclass(kw_only=True)
class ScoreCLIConfig:
    sys: str = "-"
    """File of hypotheses, one per line ('-': standard input)."""
    ref: str = ""
    """File of references, line for line."""
    sacrebleu_tokenizer: Literal["13a", "intl", "char", "none", "zh"] = "13a"
    """sacrebleu's tokenizer."""
    ignore_case: bool = False
    """Case-insensitive BLEU."""
    sentence_bleu: bool = False
    """Print each line's BLEU (sacrebleu, exp smoothing) instead of the corpus BLEU."""
    tokenized_bleu: bool = False
    """fairseq's token BLEU over whitespace tokens (--scoring bleu of generate) instead of sacrebleu."""


def read_lines(path: str, flag: str) -> list[str]:
    import sys
    if path == "-":
        return [line.rstrip("\n") for line in sys.stdin]
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f]
    except (OSError, UnicodeDecodeError) as e:
        raise BigseqError(f"{flag} {path}: {getattr(e, 'strerror', None) or 'not UTF-8 text'}") from None


def main(argv=None) -> list[str]:
    parser = FlagParser(prog="bigseq score")
    add_dataclass_args(parser, ScoreCLIConfig, "options")
    cfg = ScoreCLIConfig(**vars(parser.parse_args(argv)))
    if not cfg.ref:
        parser.error("--ref FILE is required")
    hyps, refs = read_lines(cfg.sys, "--sys"), read_lines(cfg.ref, "--ref")
    if len(hyps) != len(refs):
        raise BigseqError(f"--sys has {len(hyps)} lines but --ref {len(refs)}; they must match line for line")
    if cfg.tokenized_bleu:
        bleu = TokenBleu()
        for h, r in zip(hyps, refs):
            bleu.add_words(r.lower() if cfg.ignore_case else r, h.lower() if cfg.ignore_case else h)
        out = [bleu.result_string()]
    elif cfg.sentence_bleu:
        scores = sentence_bleus(hyps, refs, tokenize=cfg.sacrebleu_tokenizer, lowercase=cfg.ignore_case)
        out = [f"{i}\t{s}" for i, s in enumerate(scores)]
    else:
        score, signature = corpus_bleu(hyps, refs, tokenize=cfg.sacrebleu_tokenizer, lowercase=cfg.ignore_case)
        out = [str(score), f"sacrebleu signature: {signature}"]
    print("\n".join(out), flush=True)
    return out
