"""SequenceGenerator: cached decoding == uncached argmax, sampling filters, stopping, batching."""

import dataclasses

import pytest
import torch

import bigseq.models  # noqa: F401
from bigseq.errors import BigseqError
from bigseq.generation import GenerationConfig, SequenceGenerator, choose_next, top_k_filter, top_p_filter
from bigseq.models.transformer_lm.architectures import gpt2_tiny, llama_tiny
from bigseq.models.transformer_lm.model import TransformerLanguageModel

VOCAB = 60
PROMPTS = [[5, 9, 2], [7], [3, 4, 8, 11, 20, 1]]  # different lengths in one batch


def tiny_model(arch=llama_tiny, **kw):
    model = TransformerLanguageModel(dataclasses.replace(arch(), vocab_size=VOCAB, **kw))
    model.reset_parameters(11)
    with torch.no_grad():  # sharper logits so greedy choices are not near-ties
        model.output_weight.mul_(20)
    return model


def generator(model, eos_idx=None, **cfg):
    return SequenceGenerator(model, GenerationConfig(**cfg), eos_idx=eos_idx, pad_idx=0)


@pytest.mark.parametrize("arch", [llama_tiny, gpt2_tiny])
def test_cached_greedy_equals_argmax_of_the_full_uncached_forward(arch):
    model = tiny_model(arch, dropout=0.2)
    model.train()  # the generator must switch dropout off itself, and restore the mode
    out = generator(model, max_new_tokens=6).generate(PROMPTS)
    assert model.training
    model.eval()
    for prompt, cont in zip(PROMPTS, out):
        assert len(cont) == 6
        seq = list(prompt)
        for token in cont:
            with torch.no_grad():
                logits = model(torch.tensor([seq]))[0, -1]
            assert token == int(logits.argmax())
            seq.append(token)


def test_longrope_decoding_recomputes_the_cache_where_the_long_factors_start():
    # from position 8 on every forward uses the long factors for all its positions; the step at 8 re-runs the
    # prefix, so cached decoding still equals the uncached forward of the whole sequence
    model = tiny_model(rope_scaling="longrope", rope_original_max_positions=8, rope_short_factor=[1.0] * 8,
                       rope_long_factor=[0.05] * 8).eval()
    with torch.no_grad():  # sharper attention, so keys rotated with the wrong factors change the choices
        for layer in model.layers:
            layer.attn.q_proj.weight.mul_(5)
            layer.attn.k_proj.weight.mul_(5)
    assert model.kv_recompute_position == 8 and tiny_model().kv_recompute_position is None
    out = generator(model, max_new_tokens=10).generate(PROMPTS)
    for prompt, cont in zip(PROMPTS, out):
        seq = list(prompt)
        for token in cont:
            with torch.no_grad():
                assert token == int(model(torch.tensor([seq]))[0, -1].argmax())
            seq.append(token)


def test_top_k_1_sampling_is_greedy_and_seeded_sampling_is_reproducible():
    model = tiny_model()
    greedy = generator(model, max_new_tokens=5).generate(PROMPTS)
    assert generator(model, max_new_tokens=5, sampling=True, sampling_topk=1).generate(PROMPTS, seed=3) == greedy
    hot = generator(model, max_new_tokens=12, sampling=True, temperature=50.0)
    a, b, c = hot.generate(PROMPTS, seed=1), hot.generate(PROMPTS, seed=1), hot.generate(PROMPTS, seed=2)
    assert a == b
    assert a != c


def test_generation_stops_at_eos_per_row():
    model = tiny_model()
    free = generator(model, max_new_tokens=6).generate(PROMPTS)
    eos = free[0][2]
    out = generator(model, eos_idx=eos, max_new_tokens=6).generate(PROMPTS)
    for cont, full in zip(out, free):
        expected = full[:full.index(eos) + 1] if eos in full else full
        assert cont == expected
    assert out[0][-1] == eos and len(out[0]) <= 3


def test_top_p_keeps_the_minimal_nucleus():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    kept = lambda p: torch.isfinite(top_p_filter(probs.log(), p))[0].tolist()
    assert kept(0.45) == [False, True, False, False]
    assert kept(0.75) == [False, True, False, True]
    assert kept(0.85) == [False, True, True, True]
    assert kept(0.99) == [True, True, True, True]
    gen = torch.Generator().manual_seed(0)
    draws = {int(choose_next(probs.log(), sampling=True, top_p=0.75, generator=gen)) for _ in range(200)}
    assert draws == {1, 3}


def test_top_k_keeps_the_k_most_likely():
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.0, 0.5]])
    assert torch.isfinite(top_k_filter(logits, 2))[0].tolist() == [False, True, False, True, False]
    gen = torch.Generator().manual_seed(0)
    draws = {int(choose_next(logits, sampling=True, top_k=2, temperature=5.0, generator=gen)) for _ in range(200)}
    assert draws == {1, 3}


def test_bad_requests_are_clear_errors():
    model = tiny_model(gpt2_tiny, max_target_positions=10)
    with pytest.raises(BigseqError, match="positions"):
        generator(model, max_new_tokens=8).generate([[1, 2, 3]])
    with pytest.raises(BigseqError, match="empty prompt"):
        generator(model, max_new_tokens=2).generate([[1], []])
    with pytest.raises(BigseqError, match="temperature"):
        GenerationConfig(temperature=0.0)
