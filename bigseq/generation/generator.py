"""SequenceGenerator: batched decoding for decoder-only LMs with a KV cache.

Prompts of different lengths share one position axis (right-padded): the
shortest common prefix is prefilled in one forward, then every step feeds one
token per row; a row still inside its prompt is fed its own next prompt token
instead of a generated one. Every row therefore sees exactly the positions and
keys it would see alone, with no attention mask needed.

The model contract: ``model(tokens_BT, kv_cache=..., start_pos=...) -> logits_BTV``,
``model.make_kv_cache(batch_size, max_len, dtype, device)`` and optionally
``model.max_positions`` (int or None) and ``model.kv_recompute_position`` (int or None): the
decode step at that position re-runs the whole prefix, rewriting the cache. A model whose RoPE
depends on the sequence length (longrope: long factors once a forward reaches past the
pretraining length) needs this so the cached keys of earlier positions switch too; transformers'
Phi-3 generation drops its cache at the same step.
"""

from __future__ import annotations

from typing import Sequence

import torch

from bigseq.errors import BigseqError
from bigseq.generation.config import GenerationConfig
from bigseq.generation.sampling import choose_next


class SequenceGenerator:
    def __init__(self, model, cfg: GenerationConfig | None = None, *, eos_idx: int | None, pad_idx: int = 0):
        self.model = model
        self.cfg = cfg or GenerationConfig()
        self.eos_idx = eos_idx
        self.pad_idx = pad_idx

    def _pack(self, prompts: Sequence[Sequence[int]], device) -> tuple[torch.Tensor, torch.Tensor, int]:
        if not prompts:
            raise BigseqError("no prompts to generate from")
        lengths = [len(p) for p in prompts]
        if min(lengths) == 0:
            raise BigseqError("an empty prompt cannot be continued; start each prompt with at least one token "
                              "(e.g. the beginning/end-of-sentence token)")
        total = max(lengths) + self.cfg.max_new_tokens
        limit = getattr(self.model, "max_positions", None)
        if limit is not None and total > limit:
            raise BigseqError(f"prompt of {max(lengths)} tokens + --max-new-tokens {self.cfg.max_new_tokens} exceeds "
                              f"the model's {limit} positions; shorten the prompt or lower --max-new-tokens")
        tokens_BL = torch.full((len(prompts), total), self.pad_idx, dtype=torch.long, device=device)
        for i, p in enumerate(prompts):
            tokens_BL[i, :len(p)] = torch.as_tensor(list(p), dtype=torch.long, device=device)
        return tokens_BL, torch.tensor(lengths, device=device), total

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], *, seed: int | None = None) -> list[list[int]]:
        """Token ids of each prompt's continuation (ends with eos when it stopped there)."""
        cfg, model = self.cfg, self.model
        ref = next(model.parameters())
        tokens_BL, prompt_len_B, total = self._pack(prompts, ref.device)
        gen = None
        if cfg.sampling:
            gen = torch.Generator(device=ref.device)
            gen.manual_seed(seed if seed is not None else torch.seed())
        was_training = model.training
        model.eval()
        try:
            return self._decode(tokens_BL, prompt_len_B, total, gen)
        finally:
            model.train(was_training)

    def _decode(self, tokens_BL, prompt_len_B, total, gen) -> list[list[int]]:
        cfg, model = self.cfg, self.model
        B = tokens_BL.shape[0]
        start = int(prompt_len_B.min())
        cache = model.make_kv_cache(B, total, dtype=None, device=tokens_BL.device)
        recompute_at = getattr(model, "kv_recompute_position", None)
        logits_BV = model(tokens_BL[:, :start], kv_cache=cache, start_pos=0)[:, -1]
        finished_B = torch.zeros(B, dtype=torch.bool, device=tokens_BL.device)
        for pos in range(start, total):
            choice_B = choose_next(logits_BV, sampling=cfg.sampling, temperature=cfg.temperature,
                                   top_k=cfg.sampling_topk, top_p=cfg.sampling_topp, generator=gen)
            in_prompt_B = pos < prompt_len_B
            next_B = torch.where(in_prompt_B, tokens_BL[:, pos], choice_B)
            next_B = next_B.masked_fill(finished_B, self.pad_idx)
            tokens_BL[:, pos] = next_B
            generated_B = ~in_prompt_B & ~finished_B
            if cfg.stop_at_eos and self.eos_idx is not None:
                finished_B |= generated_B & (next_B == self.eos_idx)
            finished_B |= pos + 1 >= prompt_len_B + cfg.max_new_tokens
            if bool(finished_B.all()) or pos + 1 == total:
                break
            if pos == recompute_at:
                logits_BV = model(tokens_BL[:, :pos + 1], kv_cache=cache, start_pos=0)[:, -1]
            else:
                logits_BV = model(next_B[:, None], kv_cache=cache, start_pos=pos)[:, -1]
        return self._continuations(tokens_BL, prompt_len_B)

    def _continuations(self, tokens_BL, prompt_len_B) -> list[list[int]]:
        out = []
        for row, n in zip(tokens_BL.tolist(), prompt_len_B.tolist()):
            cont = row[n:n + self.cfg.max_new_tokens]
            if self.cfg.stop_at_eos and self.eos_idx is not None and self.eos_idx in cont:
                cont = cont[:cont.index(self.eos_idx) + 1]
            out.append(cont)
        return out
