"""Parameter init is a function of (seed, parameter name) only."""

import dataclasses
import math

import torch
import torch.nn as nn

import bigseq.models  # noqa: F401
from bigseq.models.transformer_lm.architectures import gpt2_tiny, llama_tiny
from bigseq.models.transformer_lm.model import (
    TransformerLanguageModel,
    TransformerLMEmbedding,
    build_decoder_layer,
    init_rules,
)
from bigseq.modules.init import init_params_by_name, stable_seed


def cfg(arch=llama_tiny, **kw):
    return dataclasses.replace(arch(), vocab_size=50, **kw)


def built(c, seed):
    model = TransformerLanguageModel(c)
    model.reset_parameters(seed)
    return model


def test_same_seed_same_weights_whatever_the_global_rng_and_construction_order():
    c = cfg()
    torch.manual_seed(0)
    a = built(c, seed=7)
    torch.manual_seed(123)
    torch.rand(1000)
    b = TransformerLanguageModel(c)
    # rebuild the layers in reverse order: construction order must not matter
    layers = [None] * c.decoder_layers
    for i in reversed(range(c.decoder_layers)):
        layers[i] = build_decoder_layer(c, i)
    b.layers = nn.ModuleList(layers)
    b.reset_parameters(7)
    sd_a, sd_b = a.state_dict(), b.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for name in sd_a:
        assert torch.equal(sd_a[name], sd_b[name]), name


def test_different_seeds_differ_and_parameters_are_not_copies_of_each_other():
    c = cfg()
    a, b = built(c, 1), built(c, 2)
    q0, q1 = a.layers[0].attn.q_proj.weight, a.layers[1].attn.q_proj.weight
    assert not torch.equal(q0, b.layers[0].attn.q_proj.weight)
    assert not torch.equal(q0, q1)


def test_a_submodule_built_alone_gets_the_same_tensors_as_inside_the_model():
    c = cfg(gpt2_tiny)
    model = built(c, seed=3)
    rules = init_rules(c)
    layer = build_decoder_layer(c, 1)
    init_params_by_name(layer, 3, rules, prefix="layers.1.")
    for name, p in layer.named_parameters():
        assert torch.equal(p, model.get_parameter("layers.1." + name)), name
    embed = TransformerLMEmbedding(c)
    init_params_by_name(embed, 3, rules, prefix="embed.")
    assert torch.equal(embed.tokens.weight, model.embed.tokens.weight)
    assert torch.equal(embed.positions.weight, model.embed.positions.weight)


def test_rules_norms_ones_biases_zero_residual_projections_scaled():
    c = cfg(gpt2_tiny, decoder_embed_dim=256, decoder_ffn_embed_dim=1024, decoder_layers=8)
    model = built(c, seed=1)
    layer = model.layers[0]
    assert torch.equal(layer.attn_norm.weight, torch.ones(256))
    assert torch.equal(layer.attn.q_proj.bias, torch.zeros(256))
    assert abs(layer.attn.q_proj.weight.std().item() - 0.02) < 0.001
    expected = 0.02 / math.sqrt(2 * 8)
    assert abs(layer.attn.out_proj.weight.std().item() - expected) < 0.0005
    assert abs(layer.ffn.down_proj.weight.std().item() - expected) < 0.0005


def test_meta_parameters_are_skipped_and_stable_seed_is_fixed_across_runs():
    with torch.device("meta"):
        model = TransformerLanguageModel(cfg())
    model.reset_parameters(1)  # nothing to fill, must not fail
    assert model.embed.tokens.weight.is_meta
    # sha256-based: identical in every process and Python run (no hash randomization)
    assert stable_seed(1, "embed.tokens.weight") == stable_seed(1, "embed.tokens.weight")
    assert stable_seed(1, "a") == 2514313960912413249
    assert stable_seed(1, "a") != stable_seed(2, "a")
