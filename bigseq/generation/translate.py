"""Translate a test split or typed lines and print fairseq-generate's lines.

Per sentence: ``S-{id}\\tsource``, ``T-{id}\\treference`` (unk escaped as <<unk>>),
then for each of the --nbest best hypotheses ``H-{id}\\tscore\\ttokens``,
``D-{id}\\tscore\\tdetokenized`` and ``P-{id}\\tper-token scores`` (eos included,
"%.4f"); scores in base 2 (fairseq divides the float32 score by ln 2). Ids are
line numbers of the split, printed in batch (length-sorted) order, within a batch
longest source first as fairseq; interactive ids count the input lines in order.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import torch

from bigseq.errors import BigseqError
from bigseq.generation.beam_search import BeamSearchGenerator, Hypothesis
from bigseq.generation.config import BeamSearchConfig
from bigseq.generation.scoring import corpus_bleu
from bigseq.generation.text import SideText
from bigseq.generation.token_bleu import TokenBleu

LN2 = math.log(2)


def base2(score: float) -> float:
    """fairseq's printed score: the float32 score tensor / ln 2, as a Python float."""
    return (torch.tensor(score, dtype=torch.float32) / LN2).item()


def hypothesis_lines(sid: int, hyp: Hypothesis, tgt: SideText) -> list[str]:
    score = base2(hyp.score)
    positional = " ".join(f"{p:.4f}" for p in (hyp.positional_scores.float().cpu() / LN2).tolist())
    return [f"H-{sid}\t{score}\t{tgt.tokens(hyp.tokens)}", f"D-{sid}\t{score}\t{tgt.detok(hyp.tokens)}",
            f"P-{sid}\t{positional}"]


def make_generator(model, task, cfg: BeamSearchConfig) -> BeamSearchGenerator:
    d = task.target_dictionary
    return BeamSearchGenerator(model, cfg, eos_idx=d.eos_idx, pad_idx=d.pad_idx, unk_idx=d.unk_idx, vocab_size=len(d))


def side_texts(task, post_process: str | None) -> tuple[SideText, SideText]:
    return (SideText(task.source_dictionary, getattr(task, "source_tokenizer", None), post_process),
            SideText(task.target_dictionary, getattr(task, "target_tokenizer", None), post_process))


@dataclass
class Scorer:
    """--scoring bleu (fairseq's token BLEU) or sacrebleu (detokenized text, with its signature)."""

    kind: str = "sacrebleu"
    tokenize: str = "13a"
    lowercase: bool = False
    token_bleu: TokenBleu = field(default_factory=TokenBleu)
    hyps: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)

    def add(self, ref_ids, hyp_ids, ref_text: str, hyp_text: str, by_words: bool) -> None:
        if self.kind == "bleu" and by_words:  # post-processed text: its words, as fairseq re-encodes them
            self.token_bleu.add_words(ref_text, hyp_text)
        elif self.kind == "bleu":
            self.token_bleu.add(ref_ids, hyp_ids)
        else:
            self.hyps.append(hyp_text)
            self.refs.append(ref_text)

    def result_lines(self) -> list[str]:
        if self.kind == "bleu":
            return [self.token_bleu.result_string()]
        score, signature = corpus_bleu(self.hyps, self.refs, tokenize=self.tokenize, lowercase=self.lowercase)
        return [str(score), f"sacrebleu signature: {signature}"]


def generate_split(task, model, batches, cfg: BeamSearchConfig, out, *, subset: str, post_process: str | None = None,
                   scorer: Scorer | None = None, quiet: bool = False, seed: int = 1) -> dict[int, str]:
    """Translate every batch (Seq2SeqBatch-like), print the lines to ``out``; -> best detokenized
    hypothesis by sentence id. Ends with fairseq's ``Generate {subset} with beam=K: BLEU...`` line."""
    generator = make_generator(model, task, cfg)
    src, tgt = side_texts(task, post_process)
    pad = task.target_dictionary.pad_idx
    device = next(model.parameters()).device
    by_words = post_process is not None or tgt.tokenizer is not None
    # seconds in beam search only, as fairseq's gen_timer: loading, detokenizing and printing are not in it
    best, sentences, tokens, seconds = {}, 0, 0, 0.0
    for batch in batches:
        keep = torch.nonzero(batch.ids >= 0).view(-1)  # a filler row (ids -1) is not a sentence
        if not len(keep):
            continue
        # fairseq's collate orders a batch's rows by source length, longest first (ties keep their order);
        # bigseq's keeps the plan's order, so sort here to print the sentences in fairseq's order
        keep = keep[batch.src_lengths[keep].sort(descending=True, stable=True).indices]
        src_tokens, src_lengths = batch.src_tokens[keep].to(device), batch.src_lengths[keep].to(device)
        targets = batch.targets[keep] if batch.targets is not None else None
        prefix = targets[:, :cfg.prefix_size].to(device) if cfg.prefix_size > 0 and targets is not None else None
        start = time.perf_counter()
        hyps = generator.generate(src_tokens, src_lengths, prefix_tokens=prefix, seed=seed)
        seconds += time.perf_counter() - start
        for i, sid in enumerate(batch.ids[keep].tolist()):
            lines = [f"S-{sid}\t{src.detok(src_tokens[i][src_tokens[i].ne(pad)])}"]
            ref_ids = targets[i][targets[i].ne(pad)] if targets is not None else None
            ref_text = tgt.detok(ref_ids, escape_unk=True) if ref_ids is not None else None
            if ref_ids is not None:
                lines.append(f"T-{sid}\t{ref_text}")
            for hyp in hyps[i][:cfg.nbest]:
                lines += hypothesis_lines(sid, hyp, tgt)
            if not quiet:
                print("\n".join(lines), file=out, flush=True)
            best[sid] = tgt.detok(hyps[i][0].tokens)
            if scorer is not None and ref_ids is not None:
                scorer.add(ref_ids, hyps[i][0].tokens, ref_text, best[sid], by_words)
            sentences, tokens = sentences + 1, tokens + len(hyps[i][0].tokens)
    print("bigseq: NOTE: hypothesis and token scores are output in base 2", file=sys.stderr)
    print(f"bigseq: Translated {sentences:,} sentences ({tokens:,} tokens) in {seconds:.1f}s "
          f"({sentences / max(seconds, 1e-9):.2f} sentences/s, {tokens / max(seconds, 1e-9):.2f} tokens/s)",
          file=sys.stderr, flush=True)
    if scorer is not None and sentences:
        first, *rest = scorer.result_lines()
        print(f"Generate {subset} with beam={cfg.beam}: {first}", *rest, sep="\n", file=out, flush=True)
    return best


def left_pad(rows: list[list[int]], pad: int, left: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        if left:
            tokens[i, width - len(r):] = torch.tensor(r)
        else:
            tokens[i, :len(r)] = torch.tensor(r)
    return tokens, torch.tensor([len(r) for r in rows])


def interactive(task, model, lines, cfg: BeamSearchConfig, out, *, buffer_size: int = 1, batch_size: int | None = None,
                post_process: str | None = None, skip_invalid: bool = False, seed: int = 1) -> list[str]:
    """Translate raw text lines (encoded as the data was), ``buffer_size`` at a time; print S-, W- (seconds),
    H-, D-, P- per line in input order; -> the best detokenized hypothesis of each line."""
    generator = make_generator(model, task, cfg)
    src, tgt = side_texts(task, post_process)
    pad = task.source_dictionary.pad_idx
    left = getattr(getattr(task, "cfg", None), "left_pad_source", True)
    limit = (getattr(model, "max_positions", None) or (None, None))[0]
    device = next(model.parameters()).device
    results, buffer, sid = [], [], 0
    for line in list(lines) + [None]:
        if line is not None:
            buffer.append((sid, line.rstrip("\n")))
            sid += 1
        if buffer and (line is None or len(buffer) >= buffer_size):
            results += _translate_buffer(buffer, src, tgt, generator, cfg, out, pad=pad, left=left, limit=limit,
                                         device=device, batch_size=batch_size or len(buffer),
                                         skip_invalid=skip_invalid, seed=seed)
            buffer = []
    return results


def _translate_buffer(buffer, src, tgt, generator, cfg, out, *, pad, left, limit, device, batch_size, skip_invalid,
                      seed) -> list[str]:
    encoded = {sid: src.encode(text) for sid, text in buffer}
    for sid, ids in list(encoded.items()):
        if limit is not None and len(ids) > limit:
            if not skip_invalid:
                raise BigseqError(f"input line {sid + 1} has {len(ids)} tokens (eos included), more than the model's "
                                  f"{limit} source positions; shorten it or skip such lines with "
                                  "--skip-invalid-size-inputs-valid-test")
            print(f"bigseq: warning: skipped input line {sid + 1} ({len(ids)} tokens > {limit})", file=sys.stderr)
            del encoded[sid]
    order = sorted(encoded, key=lambda s: len(encoded[s]))  # batches of similar lengths, printed in input order
    found, seconds = {}, {}
    for i in range(0, len(order), batch_size):
        sids = order[i:i + batch_size]
        start = time.perf_counter()
        src_tokens, src_lengths = left_pad([encoded[s] for s in sids], pad, left)
        hyps = generator.generate(src_tokens.to(device), src_lengths.to(device), seed=seed)
        for s, h in zip(sids, hyps):
            found[s], seconds[s] = h, (time.perf_counter() - start) / len(sids)
    best = []
    for sid, _ in buffer:
        if sid not in found:
            best.append("")
            continue
        lines = [f"S-{sid}\t{src.tokens(encoded[sid])}", f"W-{sid}\t{seconds[sid]:.3f}\tseconds"]
        for hyp in found[sid][:cfg.nbest]:
            lines += hypothesis_lines(sid, hyp, tgt)
        print("\n".join(lines), file=out, flush=True)
        best.append(tgt.detok(found[sid][0].tokens))
    return best
