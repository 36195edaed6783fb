"""One step of candidate selection for beam search, as fairseq's ``search.BeamSearch`` / ``search.Sampling``.

Both take the step's log-probabilities ``lprobs_BKV`` (B sentences, K beams, V
words) and the cumulative scores of the beams so far, and return candidates
``(scores, tokens, beams)`` each (B, C), best first for beam search. At step 0
every beam holds the same prefix (eos), so only beam 0 is expanded.
"""

from __future__ import annotations

import torch


def beam_candidates(step: int, lprobs_BKV: torch.Tensor, prev_scores_BK: torch.Tensor | None):
    """The 2*K best (beam, word) continuations over the flattened K x V scores."""
    B, K, V = lprobs_BKV.shape
    if step == 0:
        lprobs_BKV = lprobs_BKV[:, :1]
    else:
        lprobs_BKV = lprobs_BKV + prev_scores_BK.unsqueeze(-1)
    flat = lprobs_BKV.reshape(B, -1)
    scores, indices = largest(flat, min(2 * K, flat.shape[1] - 1))  # fairseq's -1: pad, always -inf, never picked
    return scores, indices.fmod(V), torch.div(indices, V, rounding_mode="trunc")


CHUNK = 128


def largest(x_BN: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x_BN.topk(k)`` in a third of its time on CPU at beam search's sizes (k = 10 of 5 x 4000).

    topk copies every (value, index) pair of a row into a work queue; most of a row cannot be in its
    top k. Split the row into chunks of CHUNK: the k largest values lie in the k chunks with the
    largest maxima (each of those maxima is a distinct value >= the k-th largest chunk maximum, so
    the k-th largest value is too, and any value of another chunk is below it). Gather those chunks
    (and the tail that does not fill a chunk), then topk that. The same values and indices as topk;
    equal values may come in another order, as topk's own order among them is unspecified. Where
    fewer than k values are finite, which -inf ones fill up is not, so that falls back to topk.
    """
    B, N = x_BN.shape
    whole = N // CHUNK
    if whole < 4 * k or x_BN.device.type != "cpu":
        return x_BN.topk(k)
    maxima_BC = x_BN[:, :whole * CHUNK].view(B, whole, CHUNK).amax(-1)
    chunks_Bk = maxima_BC.topk(k).indices.sort(-1).values  # ascending: candidates keep the row's order
    offsets = torch.arange(CHUNK, device=x_BN.device)
    idx = (chunks_Bk.unsqueeze(-1) * CHUNK + offsets).view(B, -1)
    if whole * CHUNK < N:
        tail = torch.arange(whole * CHUNK, N, device=x_BN.device).expand(B, -1)
        idx = torch.cat([idx, tail], 1)
    scores, pos = x_BN.gather(1, idx).topk(k)
    if bool(torch.isneginf(scores[:, -1]).any()):
        return x_BN.topk(k)
    return scores, idx.gather(1, pos)


def top_p_sorted(probs_BKV: torch.Tensor, p: float):
    """fairseq's ``_sample_topp``: the smallest prefix of the sorted probabilities reaching p (others 0)."""
    sorted_probs, sorted_ids = probs_BKV.sort(descending=True)
    mask = sorted_probs.cumsum(dim=2).lt(p)
    last = mask.cumsum(dim=2)[:, :, -1:].clamp_(0, mask.shape[2] - 1)
    mask = mask.scatter_(2, last, True)
    width = int(last.max()) + 1
    return sorted_probs[:, :, :width].masked_fill(~mask[:, :, :width], 0), sorted_ids[:, :, :width]


def sampling_candidates(step: int, lprobs_BKV: torch.Tensor, prev_scores_BK: torch.Tensor | None, *,
                        topk: int = -1, topp: float = -1.0, generator: torch.Generator | None = None):
    """One sampled word per beam (K candidates); at step 0 the K samples all extend beam 0."""
    B, K, V = lprobs_BKV.shape
    if step == 0:
        lprobs_BKV = lprobs_BKV[:, :1]
    top_ids = None
    if topp > 0:
        probs, top_ids = top_p_sorted(lprobs_BKV.exp(), topp)
    elif topk > 0:
        lprobs_BKV, top_ids = lprobs_BKV.topk(topk)
        probs = lprobs_BKV.exp()
    else:
        probs = lprobs_BKV.exp()
    if step == 0:
        ids_BK = torch.multinomial(probs.view(B, -1), K, replacement=True, generator=generator)
        probs = probs.expand(B, K, -1)
    else:
        ids_BK = torch.multinomial(probs.view(B * K, -1), 1, replacement=True, generator=generator).view(B, K)
    scores_BK = probs.gather(2, ids_BK.unsqueeze(-1)).log().view(B, K)
    if top_ids is not None:
        ids_BK = top_ids.expand(B, K, -1).gather(2, ids_BK.unsqueeze(-1)).squeeze(2)
    if step == 0:
        return scores_BK, ids_BK, torch.zeros_like(ids_BK)
    beams_BK = torch.arange(K, device=ids_BK.device).repeat(B, 1)
    return scores_BK + prev_scores_BK, ids_BK, beams_BK


def block_repeated_ngrams(tokens_RT: torch.Tensor, lprobs_RV: torch.Tensor, n: int) -> None:
    """-inf (in place) for every word that would repeat an n-gram of its row (fairseq's NGramRepeatBlock).

    tokens_RT: each row's tokens so far, the leading eos included (as fairseq counts it). For n = 1
    the leading eos is skipped: fairseq would ban eos from the first step on and never finish.
    Vectorized over rows and positions (fairseq's CPU path loops over both in Python): a window
    starting at i repeats the row's last n-1 tokens -> the token after it, at i + n-1, is banned.
    """
    T = tokens_RT.shape[1]
    if n == 1:
        if T > 1:
            lprobs_RV.scatter_(1, tokens_RT[:, 1:], float("-inf"))
        return
    windows = T - n + 1  # window starts 0 .. T-n; the last n-1 tokens are the context
    if windows <= 0:
        return
    match_RW = torch.ones(tokens_RT.shape[0], windows, dtype=torch.bool, device=tokens_RT.device)
    for j in range(n - 1):
        match_RW &= tokens_RT[:, j:j + windows] == tokens_RT[:, T - n + 1 + j, None]
    rows, starts = match_RW.nonzero(as_tuple=True)
    if len(rows):
        lprobs_RV[rows, tokens_RT[rows, starts + n - 1]] = float("-inf")
