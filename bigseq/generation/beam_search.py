"""Beam search for encoder-decoder models with fairseq's ``SequenceGenerator`` semantics.

The source is encoded once and its encoder output repeated ``beam`` times;
every hypothesis starts with eos. Each step scores the next word
(log_softmax(logits / temperature); pad banned; unk penalized; only eos once
max_len is reached, eos keeping its real log-probability; the reference prefix
forced, else eos banned before --min-len; repeated n-grams banned), keeps the
2*beam best (beam, word) candidates, finalizes those of the first ``beam`` that
end in eos with score = log-prob / len**lenpen (len counts eos), and continues
with the first ``beam`` candidates that do not. A sentence is done once it has
``beam`` finished hypotheses (no better-score check: fairseq's early stop) or
max_len is reached; done sentences leave the batch. Legend: B sentences,
K beams, R = B*K rows, V words.

The model contract (the ``transformer`` family): ``encode(src_tokens, src_lengths)
-> EncoderOut``; ``decode(prev_tokens, encoder_out, kv_cache=, start_pos=) ->
logits`` with B*K token rows over the B sentences' encoder output (rows
s*K .. s*K + K-1 are sentence s's beams; encoder_out None after the first step:
the cache holds the encoder keys, once per sentence); ``make_kv_cache(batch_size,
max_len, dtype, device)``; ``reorder_kv_cache(cache, rows, cross_attn=)`` (in
place, or returns the new cache; cross_attn=False: rows only move among one
sentence's beams, the encoder keys may stay; else whole sentences are kept or
dropped); ``max_positions -> (source, target)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bigseq.errors import BigseqError
from bigseq.generation.config import BeamSearchConfig
from bigseq.generation.search import beam_candidates, block_repeated_ngrams, sampling_candidates

NEG_INF = float("-inf")


@dataclass
class Hypothesis:
    tokens: torch.Tensor
    """(L,) generated ids, ending with eos."""
    score: float
    """Log-probability (natural log) / L**lenpen; fairseq prints it / ln 2."""
    positional_scores: torch.Tensor
    """(L,) log-probability of each generated token, eos included."""


class BeamSearchGenerator:
    def __init__(self, model, cfg: BeamSearchConfig | None = None, *, eos_idx: int, pad_idx: int,
                 unk_idx: int | None = None, vocab_size: int | None = None):
        self.model, self.cfg = model, cfg or BeamSearchConfig()
        self.eos, self.pad, self.unk = eos_idx, pad_idx, unk_idx
        # fairseq caps the beam below the vocabulary size (pad can never be chosen)
        self.beam = self.cfg.beam if vocab_size is None else max(1, min(self.cfg.beam, vocab_size - 1))

    def max_len(self, src_width: int, src_len_B: torch.Tensor) -> int:
        """fairseq's limit: min(a * padded source width + b, max target positions - 1)."""
        cfg = self.cfg
        if cfg.match_source_len:
            return int(src_len_B.max())
        limit = int(cfg.max_len_a * src_width + cfg.max_len_b)
        positions = getattr(self.model, "max_positions", None)
        if positions is not None and positions[1] is not None:
            limit = min(limit, positions[1] - 1)
        if cfg.min_len > limit:
            raise BigseqError(f"--min-len {cfg.min_len} exceeds the maximum length {limit} "
                              "(--max-len-a/--max-len-b, the model's target positions); lower --min-len")
        return limit

    @torch.no_grad()
    def generate(self, src_tokens: torch.Tensor, src_lengths: torch.Tensor, *,
                 prefix_tokens: torch.Tensor | None = None, seed: int | None = None) -> list[list[Hypothesis]]:
        """-> per sentence (input order), its finished hypotheses, best first (up to --beam of them).

        prefix_tokens (B, P): forced as the first tokens (cut to --prefix-size when that is set);
        a pad in it forces nothing at that step, an eos ends the hypothesis there."""
        if self.cfg.prefix_size > 0 and prefix_tokens is None:
            raise BigseqError("--prefix-size needs reference targets to take the prefix from")
        if prefix_tokens is not None and self.cfg.prefix_size > 0:
            prefix_tokens = prefix_tokens[:, :self.cfg.prefix_size]
        gen = None
        if self.cfg.sampling:
            gen = torch.Generator(device=src_tokens.device)  # its own: the global RNG stays untouched
            if seed is None:
                gen.seed()
            else:
                gen.manual_seed(seed)
        was_training = self.model.training
        self.model.eval()
        try:
            return self._search(src_tokens, src_lengths, prefix_tokens, gen)
        finally:
            self.model.train(was_training)

    def _search(self, src_tokens, src_lengths, prefix, gen) -> list[list[Hypothesis]]:
        model, K, dev = self.model, self.beam, src_tokens.device
        B, src_width = src_tokens.shape
        src_len_B = (src_tokens.ne(self.eos) & src_tokens.ne(self.pad)).sum(1)  # fairseq's, eos not counted
        max_len = self.max_len(src_width, src_len_B)
        enc = model.encode(src_tokens, src_lengths)  # once per sentence: its K beams (adjacent rows) share it
        cache = model.make_kv_cache(B * K, max_len + 1, dtype=None, device=dev)
        tokens = torch.full((B * K, max_len + 2), self.pad, dtype=torch.long, device=dev)
        tokens[:, 0] = self.eos
        beams = _Beams(K, tokens, torch.zeros(B * K, max_len + 1, device=dev),
                       torch.zeros(B, K, dtype=torch.bool, device=dev), torch.arange(B), src_len_B, prefix)
        finalized: list[list[Hypothesis]] = [[] for _ in range(B)]
        reorder, kept, remaining = None, None, B
        for step in range(max_len + 1):
            if reorder is not None:
                if kept is not None:  # rows were numbered after dropping sentences; the cache still has them
                    reorder = reorder + ((kept - torch.arange(len(kept), device=dev)) * K).repeat_interleave(K)
                # beams move within their sentence, whose encoder keys they share: those only
                # change when sentences leave the batch
                cache = _reordered(model, cache, reorder, cross_attn=kept is not None)
            logits = model.decode(beams.tokens[:, step:step + 1], enc, kv_cache=cache, start_pos=step)[:, -1]
            enc = None  # the first step stored the encoder keys in the cache; later steps read them there
            lprobs = self._lprobs(logits, step, max_len, beams)
            cand_scores, cand_words, cand_beams = self._candidates(step, lprobs, beams, gen)
            eos_mask = cand_words.eq(self.eos) & cand_scores.ne(NEG_INF)
            eos_mask[:, :K][beams.ignore_BK] = False
            done = []
            if eos_mask[:, :K].any():  # only the first K candidates may finish
                top = eos_mask[:, :K]
                rows = (cand_beams + beams.offsets())[:, :K][top]
                done = self._finalize(step, rows, cand_scores[:, :K][top], beams, finalized, max_len)
                remaining -= len(done)
            if remaining == 0:
                break
            kept = None
            if done:
                keep = torch.ones(beams.B, dtype=torch.bool, device=dev)
                keep[done] = False
                kept = torch.arange(beams.B, device=dev)[keep]
                beams.keep(kept)
                eos_mask, cand_scores, cand_words, cand_beams = (t[kept] for t in
                                                                 (eos_mask, cand_scores, cand_words, cand_beams))
            reorder = beams.advance(step, eos_mask, cand_scores, cand_words, cand_beams)
        for hyps in finalized:  # stable: equal scores keep the order they finished in
            hyps.sort(key=lambda h: -h.score)
        return finalized

    def _lprobs(self, logits_RV: torch.Tensor, step: int, max_len: int, beams: "_Beams") -> torch.Tensor:
        """The step's log-probabilities under fairseq's rules (see the module docstring)."""
        logits_RV = logits_RV.float()
        if self.cfg.temperature != 1.0:  # each full pass over the R x V scores costs as much as a layer's linear
            logits_RV = logits_RV / self.cfg.temperature
        lprobs = torch.log_softmax(logits_RV, dim=-1)
        lprobs.nan_to_num_(nan=NEG_INF, posinf=float("inf"), neginf=NEG_INF)  # NaN -> -inf in one pass
        lprobs[:, self.pad] = NEG_INF
        if self.unk is not None:
            lprobs[:, self.unk] -= self.cfg.unkpen
        if step >= max_len:  # only eos, with its own log-probability
            lprobs[:, :self.eos] = NEG_INF
            lprobs[:, self.eos + 1:] = NEG_INF
        if beams.prefix is not None and step < beams.prefix.shape[1] and step < max_len:
            self._force_prefix(step, lprobs, beams)
        elif step < self.cfg.min_len:
            lprobs[:, self.eos] = NEG_INF
        if self.cfg.no_repeat_ngram_size > 0:
            block_repeated_ngrams(beams.tokens[:, :step + 1], lprobs, self.cfg.no_repeat_ngram_size)
        return lprobs

    def _candidates(self, step: int, lprobs_RV: torch.Tensor, beams: "_Beams", gen):
        lprobs_BKV = lprobs_RV.view(beams.B, self.beam, -1)
        prev = beams.scores.view(beams.B, self.beam, -1)[:, :, step - 1] if step > 0 else None
        if self.cfg.sampling:
            return sampling_candidates(step, lprobs_BKV, prev, topk=self.cfg.sampling_topk,
                                       topp=self.cfg.sampling_topp, generator=gen)
        return beam_candidates(step, lprobs_BKV, prev)

    def _force_prefix(self, step: int, lprobs: torch.Tensor, beams: "_Beams") -> None:
        """Only the prefix token keeps its log-probability (in place)."""
        K = self.beam
        forced = beams.prefix[:, step].repeat_interleave(K)
        forced_lprobs = lprobs.gather(-1, forced.unsqueeze(-1))
        on = forced.ne(self.pad)  # a reference shorter than the prefix forces nothing there
        lprobs[on] = NEG_INF
        lprobs[on] = lprobs[on].scatter(-1, forced[on].unsqueeze(-1), forced_lprobs[on])
        ends = forced.eq(self.eos)
        if ends.any():  # the prefix ends here: every beam becomes a copy of beam 0
            first = ends.view(-1, K)[:, 0]
            for t in (beams.tokens, beams.scores, lprobs):
                _copy_first_beam(t, first, K)

    def _finalize(self, step, rows, eos_scores, beams: "_Beams", finalized, max_len) -> list[int]:
        """Store the hypotheses ending at ``rows``; -> the batch positions of sentences now done."""
        K, cfg = self.beam, self.cfg
        words = beams.tokens[rows, 1:step + 2].clone()
        words[:, step] = self.eos
        positional = beams.scores[rows, :step + 1].clone()
        positional[:, step] = eos_scores
        positional[:, 1:] = positional[:, 1:] - positional[:, :-1]
        if not cfg.unnormalized:
            eos_scores = eos_scores / (step + 1) ** cfg.lenpen
        groups = torch.div(rows, K, rounding_mode="trunc")
        if cfg.match_source_len:
            eos_scores = torch.where(step > beams.src_len_B[groups], NEG_INF, eos_scores)
        sentences = beams.live[groups.cpu()].tolist()
        for i, sentence in enumerate(sentences):
            if len(finalized[sentence]) < K:
                finalized[sentence].append(Hypothesis(words[i], float(eos_scores[i]), positional[i]))
        done = {g for g, s in zip(groups.tolist(), sentences) if len(finalized[s]) == K or step == max_len}
        return sorted(done)


@dataclass
class _Beams:
    """The hypotheses of the sentences still in the batch: row r is sentence r // K, beam r % K."""

    K: int
    tokens: torch.Tensor
    """(R, max_len + 2): eos, then the words so far."""
    scores: torch.Tensor
    """(R, max_len + 1): cumulative log-probability after each step."""
    ignore_BK: torch.Tensor
    """Beams continued from an eos candidate (sampling: fewer than K others); they may not finish again."""
    live: torch.Tensor
    """(B,) on the CPU: the input sentence of each group of K rows."""
    src_len_B: torch.Tensor
    prefix: torch.Tensor | None

    @property
    def B(self) -> int:
        return self.ignore_BK.shape[0]

    def offsets(self) -> torch.Tensor:
        return torch.arange(self.B, device=self.tokens.device).unsqueeze(1) * self.K

    def keep(self, kept: torch.Tensor) -> None:
        """Drop the sentences not in ``kept`` (their batch positions)."""
        n, K = len(kept), self.K
        self.tokens = self.tokens.view(-1, K, self.tokens.shape[1])[kept].view(n * K, -1)
        self.scores = self.scores.view(-1, K, self.scores.shape[1])[kept].view(n * K, -1)
        self.ignore_BK, self.src_len_B, self.live = self.ignore_BK[kept], self.src_len_B[kept], self.live[kept.cpu()]
        if self.prefix is not None:
            self.prefix = self.prefix[kept]

    def advance(self, step: int, eos_mask, cand_scores, cand_words, cand_beams) -> torch.Tensor:
        """Continue with the first K candidates not ending in eos; -> the row each continues."""
        K, C = self.K, 2 * self.K
        eos_mask[:, :K] |= self.ignore_BK
        order = eos_mask.long() * C + torch.arange(eos_mask.shape[1], device=eos_mask.device)  # eos ones sort last
        rank, chosen = order.topk(K, dim=1, largest=False)
        self.ignore_BK = rank.ge(C)
        rows = (cand_beams + self.offsets()).gather(1, chosen).view(-1)
        self.tokens[:, :step + 1] = self.tokens[rows, :step + 1]
        self.tokens.view(self.B, K, -1)[:, :, step + 1] = cand_words.gather(1, chosen)
        if step > 0:
            self.scores[:, :step] = self.scores[rows, :step]
        self.scores.view(self.B, K, -1)[:, :, step] = cand_scores.gather(1, chosen)
        return rows


def _copy_first_beam(t: torch.Tensor, sentences: torch.Tensor, K: int) -> torch.Tensor:
    t = t.view(-1, K, t.shape[-1])
    t[sentences] = t[sentences][:, :1, :]
    return t.view(-1, t.shape[-1])


def _reordered(model, cache, rows, *, cross_attn: bool):
    new = model.reorder_kv_cache(cache, rows, cross_attn=cross_attn)
    return cache if new is None else new
