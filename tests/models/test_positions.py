"""Per-token positions (B, T) through transformer_lm: plain forward, recomputation, pipeline layers."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from bigseq.errors import BigseqError
from bigseq.models.transformer_lm import architectures as archs
from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.model import TransformerLanguageModel
from bigseq.models.transformer_lm.pipeline import pipeline_layers
from bigseq.modules.init import construct_without_default_init, init_params_by_name

VOCAB = 97
CONFIGS = {
    "rope": archs.llama_tiny(),
    "learned": archs.gpt2_tiny(),
    "sinusoidal": TransformerLMConfig(decoder_layers=2, decoder_embed_dim=32, decoder_ffn_embed_dim=64,
                                      decoder_attention_heads=4, layernorm_embedding=True),
}


def build(cfg, **overrides) -> TransformerLanguageModel:
    cfg = dataclasses.replace(cfg, **overrides)
    return TransformerLanguageModel.build(cfg, SimpleNamespace(vocab_size=VOCAB, pad_idx=1), seed=5)


@pytest.mark.parametrize("kind", CONFIGS)
def test_positions_equal_to_arange_give_the_same_logits_bit_for_bit(kind):
    model = build(CONFIGS[kind]).eval()
    tokens = torch.randint(0, VOCAB, (3, 10))
    with torch.no_grad():
        assert torch.equal(model(tokens, positions=torch.arange(10).expand(3, 10)), model(tokens))
        assert torch.equal(model(tokens, positions=torch.arange(4, 14).expand(3, 10)), model(tokens, start_pos=4))


@pytest.mark.parametrize("kind", CONFIGS)
def test_restarting_positions_place_a_packed_document_as_if_it_came_first(kind):
    # without a document mask the second document still sees the first, so only position-wise
    # quantities are compared: its embeddings equal those of the same tokens at the start of a row
    model = build(CONFIGS[kind]).eval()
    tokens = torch.randint(0, VOCAB, (1, 7))
    positions = torch.tensor([[0, 1, 2, 0, 1, 2, 3]])
    with torch.no_grad():
        packed = model.embed(tokens, positions=positions)
        alone = model.embed(tokens[:, 3:])
    torch.testing.assert_close(packed[:, 3:], alone, rtol=0, atol=0)


def test_recomputed_layers_see_the_same_positions():
    tokens = torch.randint(0, VOCAB, (2, 8))
    positions = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 6, 7]])
    grads = []
    for recompute in (False, True):
        model = build(archs.llama_tiny(), checkpoint_activations=recompute).train()
        model(tokens, positions=positions).logsumexp(-1).sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, msg=name)


@pytest.mark.parametrize("kind", CONFIGS)
@pytest.mark.parametrize("with_positions", [False, True])
def test_pipeline_layers_compose_to_the_plain_forward(kind, with_positions):
    cfg = dataclasses.replace(CONFIGS[kind], vocab_size=VOCAB)
    model = build(cfg).eval()
    tokens = torch.randint(0, VOCAB, (2, 6))
    positions = torch.tensor([[0, 1, 2, 0, 1, 2], [3, 4, 5, 6, 7, 8]])
    x = (tokens, positions) if with_positions else tokens
    tied = {}  # one module per tie key, as PipelineModule shares it
    with torch.no_grad():
        for layer in pipeline_layers(cfg):
            module = tied.get(layer.tie_key)
            if module is None:
                module = construct_without_default_init(layer.build)
                init_params_by_name(module, 5, layer.init_rules, prefix=layer.prefix)
                module.eval()
                if layer.tie_key:
                    tied[layer.tie_key] = module
            x = layer.tied_forward(module, x) if layer.tied_forward else module(x)
        expected = model(tokens, positions=positions if with_positions else None)
    assert torch.equal(x, expected)


def test_bad_positions_are_clear_errors():
    model = build(archs.gpt2_tiny(), max_target_positions=8).eval()
    tokens = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="positions: expected the shape of src_tokens"):
        model(tokens, positions=torch.arange(3)[None])
    with pytest.raises(BigseqError, match="position 8 is beyond"):
        model(tokens, positions=torch.tensor([[0, 1, 8, 2]]))


@pytest.mark.parametrize("kind", ["learned", "sinusoidal"])
def test_position_offset_shifts_every_position_fairseq_style(kind):
    """--position-offset 2 (fairseq's transformer_lm: pad_idx + 1) embeds position p as p + 2 would be without
    it: on a plain forward, with per-token positions and in a cached decode step."""
    base = build(CONFIGS[kind], dropout=0.0).eval()
    shifted = build(CONFIGS[kind], dropout=0.0, position_offset=2).eval()
    state = base.state_dict()
    if kind == "learned":  # the offset table has two more rows in front; give the base model the same rows
        table = shifted.state_dict()["embed.positions.weight"]
        state["embed.positions.weight"] = table[: state["embed.positions.weight"].shape[0]]
    shifted.load_state_dict({**state, **({"embed.positions.weight": table} if kind == "learned" else {})})
    base.load_state_dict(state)
    tokens = torch.randint(0, VOCAB, (2, 6))
    with torch.no_grad():
        assert torch.equal(shifted(tokens), base(tokens, start_pos=2))
        assert torch.equal(shifted(tokens, positions=torch.arange(6).expand(2, 6)), base(tokens, start_pos=2))
        assert torch.equal(shifted(tokens[:, 3:], start_pos=3), base(tokens[:, 3:], start_pos=5))


def test_position_offset_is_refused_where_positions_have_no_table():
    with pytest.raises(BigseqError, match="--position-offset 2: .* \\(these are rope\\)"):
        dataclasses.replace(CONFIGS["rope"], position_offset=2)
