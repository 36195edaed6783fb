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
-> EncoderOut`` with ``.select(rows)``; ``decode(prev_tokens, encoder_out,
kv_cache=, start_pos=) -> logits``; ``make_kv_cache(batch_size, max_len, dtype,
device)``; ``reorder_kv_cache(cache, rows)`` (in place, or returns the new
cache); ``max_positions -> (source, target)``.
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
        rows = torch.arange(B, device=dev).repeat_interleave(K)
        enc = model.encode(src_tokens, src_lengths).select(rows)
        cache = model.make_kv_cache(B * K, max_len + 1, dtype=None, device=dev)
        tokens = torch.full((B * K, max_len + 2), self.pad, dtype=torch.long, device=dev)
        tokens[:, 0] = self.eos
        scores = torch.zeros(B * K, max_len + 1, device=dev)
        ignore_BK = torch.zeros(B, K, dtype=torch.bool, device=dev)
        live = torch.arange(B)  # the input sentence of each row group still in the batch
        finalized: list[list[Hypothesis]] = [[] for _ in range(B)]
        reorder, kept, remaining = None, None, B
        for step in range(max_len + 1):
            if reorder is not None:
                if kept is not None:  # rows were numbered after dropping sentences; the cache still has them
                    reorder = reorder + ((kept - torch.arange(len(kept), device=dev)) * K).repeat_interleave(K)
                enc = enc.select(reorder)
                cache = _reordered(model, cache, reorder)
            logits = model.decode(tokens[:, step:step + 1], enc, kv_cache=cache, start_pos=step)[:, -1]
            lprobs = self._step_lprobs(logits, step, max_len)
            if prefix is not None and step < prefix.shape[1] and step < max_len:
                lprobs, tokens, scores = self._force_prefix(step, lprobs, tokens, scores, prefix)
            elif step < self.cfg.min_len:
                lprobs[:, self.eos] = NEG_INF
            if self.cfg.no_repeat_ngram_size > 0:
                block_repeated_ngrams(tokens[:, :step + 1], lprobs, self.cfg.no_repeat_ngram_size)
            lprobs_BKV = lprobs.view(B, K, -1)
            prev = scores.view(B, K, -1)[:, :, step - 1] if step > 0 else None
            if self.cfg.sampling:
                cand = sampling_candidates(step, lprobs_BKV, prev, topk=self.cfg.sampling_topk,
                                           topp=self.cfg.sampling_topp, generator=gen)
            else:
                cand = beam_candidates(step, lprobs_BKV, prev)
            cand_scores, cand_words, cand_beams = cand
            offsets = torch.arange(B, device=dev).unsqueeze(1) * K
            eos_mask = cand_words.eq(self.eos) & cand_scores.ne(NEG_INF)
            eos_mask[:, :K][ignore_BK] = False
            done = []
            if eos_mask[:, :K].any():
                top = eos_mask[:, :K]
                done = self._finalize(step, (cand_beams + offsets)[:, :K][top], cand_scores[:, :K][top], tokens,
                                      scores, finalized, live, src_len_B, max_len)
                remaining -= len(done)
            if remaining == 0:
                break
            kept = None
            if done:
                keep = torch.ones(B, dtype=torch.bool, device=dev)
                keep[done] = False
                kept = torch.arange(B, device=dev)[keep]
                eos_mask, cand_beams, cand_scores, cand_words = (t[kept] for t in
                                                                 (eos_mask, cand_beams, cand_scores, cand_words))
                src_len_B, ignore_BK, live = src_len_B[kept], ignore_BK[kept], live[kept.cpu()]
                prefix = prefix[kept] if prefix is not None else None
                B = len(kept)
                scores = scores.view(-1, K, scores.shape[1])[kept].view(B * K, -1)
                tokens = tokens.view(-1, K, tokens.shape[1])[kept].view(B * K, -1)
                offsets = torch.arange(B, device=dev).unsqueeze(1) * K
            # the first K candidates not ending in eos (nor ignored) continue: eos ones sort after all others
            eos_mask[:, :K] |= ignore_BK
            C = 2 * K
            order = eos_mask.long() * C + torch.arange(eos_mask.shape[1], device=dev)
            chosen_rank, chosen = order.topk(K, dim=1, largest=False)
            ignore_BK = chosen_rank.ge(C)
            src_rows = (cand_beams + offsets).gather(1, chosen).view(-1)
            tokens[:, :step + 1] = tokens[src_rows, :step + 1]
            tokens.view(B, K, -1)[:, :, step + 1] = cand_words.gather(1, chosen)
            if step > 0:
                scores[:, :step] = scores[src_rows, :step]
            scores.view(B, K, -1)[:, :, step] = cand_scores.gather(1, chosen)
            reorder = src_rows
        for hyps in finalized:  # stable: equal scores keep the order they finished in
            hyps.sort(key=lambda h: -h.score)
        return finalized

    def _step_lprobs(self, logits_RV: torch.Tensor, step: int, max_len: int) -> torch.Tensor:
        lprobs = torch.log_softmax(logits_RV.float() / self.cfg.temperature, dim=-1)
        lprobs[lprobs != lprobs] = NEG_INF
        lprobs[:, self.pad] = NEG_INF
        if self.unk is not None:
            lprobs[:, self.unk] -= self.cfg.unkpen
        if step >= max_len:  # only eos, with its own log-probability
            lprobs[:, :self.eos] = NEG_INF
            lprobs[:, self.eos + 1:] = NEG_INF
        return lprobs

    def _force_prefix(self, step, lprobs, tokens, scores, prefix):
        K = self.beam
        forced = prefix[:, step].repeat_interleave(K)
        forced_lprobs = lprobs.gather(-1, forced.unsqueeze(-1))
        on = forced.ne(self.pad)  # a reference shorter than the prefix forces nothing there
        lprobs[on] = NEG_INF
        lprobs[on] = lprobs[on].scatter(-1, forced[on].unsqueeze(-1), forced_lprobs[on])
        ends = forced.eq(self.eos)
        if ends.any():  # the prefix ends here: every beam becomes a copy of beam 0
            first = ends.view(-1, K)[:, 0]
            tokens, scores, lprobs = (_copy_first_beam(t, first, K) for t in (tokens, scores, lprobs))
        return lprobs, tokens, scores

    def _finalize(self, step, rows, eos_scores, tokens, scores, finalized, live, src_len_B, max_len) -> list[int]:
        """Store the hypotheses ending at ``rows``; -> the batch positions of sentences now done."""
        K, cfg = self.beam, self.cfg
        words = tokens[rows, 1:step + 2].clone()
        words[:, step] = self.eos
        positional = scores[rows, :step + 1].clone()
        positional[:, step] = eos_scores
        positional[:, 1:] = positional[:, 1:] - positional[:, :-1]
        if not cfg.unnormalized:
            eos_scores = eos_scores / (step + 1) ** cfg.lenpen
        groups = torch.div(rows, K, rounding_mode="trunc")
        if cfg.match_source_len:
            eos_scores = torch.where(step > src_len_B[groups], NEG_INF, eos_scores)
        for i, group in enumerate(groups.tolist()):
            hyps = finalized[int(live[group])]
            if len(hyps) < K:
                hyps.append(Hypothesis(words[i], float(eos_scores[i]), positional[i]))
        return [g for g in sorted(set(groups.tolist())) if len(finalized[int(live[g])]) == K or step == max_len]


def _copy_first_beam(t: torch.Tensor, sentences: torch.Tensor, K: int) -> torch.Tensor:
    t = t.view(-1, K, t.shape[-1])
    t[sentences] = t[sentences][:, :1, :]
    return t.view(-1, t.shape[-1])


def _reordered(model, cache, rows):
    new = model.reorder_kv_cache(cache, rows)
    return cache if new is None else new
