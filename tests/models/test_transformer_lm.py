"""transformer_lm: config validation, named architectures, forward/cache/dropout behaviour."""

import dataclasses
import pathlib
import re
from types import SimpleNamespace

import pytest
import torch

import bigseq
import bigseq.models  # noqa: F401  (registers the family)
from bigseq import registry
from bigseq.config import field_docs
from bigseq.errors import BigseqError
from bigseq.models.transformer_lm import architectures as archs
from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.model import TransformerLanguageModel

VOCAB = 97


def tiny(arch: str, **overrides) -> TransformerLanguageModel:
    cfg = dataclasses.replace(getattr(archs, arch)(), **overrides)
    task = SimpleNamespace(vocab_size=VOCAB, pad_idx=1)
    return registry.MODEL_REGISTRY.build("transformer_lm", cfg, task)


def fairseq_tiny(**overrides) -> TransformerLanguageModel:
    cfg = TransformerLMConfig(decoder_layers=2, decoder_embed_dim=32, decoder_ffn_embed_dim=64,
                              decoder_attention_heads=4, **overrides)
    return TransformerLanguageModel.build(cfg, SimpleNamespace(vocab_size=VOCAB, pad_idx=1))


@pytest.mark.parametrize("arch,vocab,expected", [
    ("gpt2_small", 50257, 124_439_808), ("gpt2_medium", 50257, 354_823_168), ("gpt2_large", 50257, 774_030_080),
    ("gpt2_xl", 50257, 1_557_611_200), ("llama_7b", 32000, 6_738_415_616), ("llama_70b", 32000, 68_976_648_192),
    ("llama_1b", 32000, 1_100_048_384)])
def test_named_architectures_have_the_real_model_sizes(arch, vocab, expected):
    model_name, fn = registry.ARCH_REGISTRY.get(arch)
    assert model_name == "transformer_lm"
    with torch.device("meta"):
        model = TransformerLanguageModel(dataclasses.replace(fn(), vocab_size=vocab))
    assert model.num_params() == expected


def test_every_config_field_has_help_text():
    docs = field_docs(TransformerLMConfig)
    missing = [f.name for f in dataclasses.fields(TransformerLMConfig) if not docs.get(f.name)]
    assert missing == []


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(decoder_embed_dim=30, decoder_attention_heads=4), "not divisible"),
    (dict(decoder_attention_heads=8, decoder_kv_heads=3), "must divide"),
    (dict(attention_dropout=0.1), "attention-dropout"),
    (dict(decoder_learned_pos=True, positions="rope"), "contradicts"),
    (dict(no_token_positional_embeddings=True, decoder_learned_pos=True), "contradict"),
    (dict(dropout=1.0), "dropout"),
    (dict(decoder_layers=0), "decoder-layers"),
])
def test_config_rejects_inconsistent_values(kwargs, fragment):
    with pytest.raises(BigseqError, match=fragment):
        TransformerLMConfig(**kwargs)


def test_vocab_size_comes_from_the_task_a_padded_one_is_kept_and_a_smaller_one_is_an_error():
    assert tiny("llama_tiny").cfg.vocab_size == VOCAB
    assert tiny("llama_tiny", vocab_size=VOCAB).output_weight.shape == (VOCAB, 64)
    # a pretrained model's table may have more rows than the tokenizer has ids (Qwen2.5, Llama 3)
    assert tiny("llama_tiny", vocab_size=VOCAB + 7).output_weight.shape == (VOCAB + 7, 64)
    with pytest.raises(BigseqError, match="smaller than the task's vocabulary"):
        tiny("llama_tiny", vocab_size=VOCAB - 1)


@pytest.mark.parametrize("make", [lambda: tiny("llama_tiny"), lambda: tiny("gpt2_tiny"),
                                  lambda: fairseq_tiny(), lambda: fairseq_tiny(layernorm_embedding=True)])
def test_cached_incremental_forward_equals_full_forward(make):
    model = make().eval()
    tokens = torch.randint(0, VOCAB, (3, 11))
    with torch.no_grad():
        full = model(tokens)
        cache = model.make_kv_cache(3, 16, torch.float32, "cpu")
        parts = [model(tokens[:, :5], kv_cache=cache, start_pos=0)]
        parts += [model(tokens[:, t:t + 1], kv_cache=cache, start_pos=t) for t in range(5, 11)]
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=1e-5)


def test_attention_is_causal():
    model = tiny("llama_tiny").eval()
    tokens = torch.randint(0, VOCAB, (1, 8))
    changed = tokens.clone()
    changed[0, 5] = (changed[0, 5] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_hidden_and_output_layer_compose_to_forward_and_tying_shares_the_matrix():
    tied, untied = tiny("gpt2_tiny"), tiny("llama_tiny")
    assert tied.output_weight is tied.embed.tokens.weight and tied.output_projection is None
    assert untied.output_weight is untied.output_projection.weight
    assert untied.output_weight.data_ptr() != untied.embed.tokens.weight.data_ptr()
    tokens = torch.randint(0, VOCAB, (2, 6))
    for model in (tied.eval(), untied.eval()):
        hidden = model.forward_hidden(tokens)
        assert hidden.shape == (2, 6, model.cfg.decoder_embed_dim)
        torch.testing.assert_close(model.output_layer(hidden), model(tokens))


def test_dropout_only_in_training():
    model = tiny("gpt2_tiny", dropout=0.3, activation_dropout=0.2)
    tokens = torch.randint(0, VOCAB, (2, 6))
    model.train()
    assert not torch.equal(model(tokens), model(tokens))
    model.eval()
    assert torch.equal(model(tokens), model(tokens))


def test_activation_checkpointing_gives_the_same_gradients():
    tokens = torch.randint(0, VOCAB, (2, 7))
    grads = []
    for recompute in (False, True):
        model = tiny("llama_tiny", checkpoint_activations=recompute).train()
        model(tokens).logsumexp(-1).sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, msg=name)


def test_fairseq_default_scales_embeddings_and_uses_sinusoidal_positions():
    model = fairseq_tiny(dropout=0.0).eval()
    assert model.cfg.position_kind == "sinusoidal" and model.embed.scale == pytest.approx(32 ** 0.5)
    tokens = torch.tensor([[3, 3]])
    x = model.embed(tokens)
    # same token, different position: only the position term differs; position 0 is [sin 0.., cos 0..]
    torch.testing.assert_close(x[0, 0], model.embed.tokens.weight[3] * 32 ** 0.5
                               + torch.cat([torch.zeros(16), torch.ones(16)]))
    assert not torch.allclose(x[0, 0], x[0, 1])


def test_learned_positions_past_the_table_is_a_clear_error():
    model = tiny("gpt2_tiny", max_target_positions=8).eval()
    with pytest.raises(BigseqError, match="max-target-positions"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_attention_goes_through_the_kernel_api_with_the_configured_impl(monkeypatch):
    import bigseq.kernels
    seen = []
    real = bigseq.kernels.attention

    def recording(q, k, v, **kw):
        seen.append(kw)
        return real(q, k, v, **{**kw, "impl": "torch"})
    monkeypatch.setattr(bigseq.kernels, "attention", recording)
    model = tiny("llama_tiny", attention_impl="triton").eval()
    model(torch.zeros(1, 4, dtype=torch.long))
    assert seen == [{"causal": True, "impl": "triton"}] * 2


def test_modules_and_models_do_not_import_deepspeed_or_distributed():
    root = pathlib.Path(bigseq.__file__).parent
    for folder in ("modules", "models/transformer_lm", "generation"):
        for path in (root / folder).rglob("*.py"):
            text = path.read_text()
            assert not re.search(r"^\s*(import|from)\s+deepspeed", text, re.M), path
            if folder == "modules":
                assert "bigseq.distributed" not in text, path



def parse_model_flags(argv: str, base: TransformerLMConfig) -> TransformerLMConfig:
    from bigseq.config import FlagParser, add_dataclass_args, build_config
    parser = FlagParser()
    add_dataclass_args(parser, TransformerLMConfig, "model")
    return build_config(TransformerLMConfig, base, vars(parser.parse_args(argv.split())))


def test_a_fairseq_command_line_maps_onto_the_config():
    cfg = parse_model_flags("--decoder-layers 3 --decoder-embed-dim 64 --decoder-ffn-embed-dim 128 "
                            "--decoder-attention-heads 4 --activation-fn gelu --decoder-learned-pos "
                            "--share-decoder-input-output-embed --decoder-normalize-before --dropout 0.2 "
                            "--max-target-positions 128", archs.transformer_lm())
    assert (cfg.decoder_layers, cfg.decoder_embed_dim, cfg.activation_fn, cfg.dropout) == (3, 64, "gelu", 0.2)
    assert cfg.position_kind == "learned" and cfg.share_decoder_input_output_embed and cfg.has_final_norm
    model = TransformerLanguageModel.build(cfg, SimpleNamespace(vocab_size=VOCAB, pad_idx=1))
    assert model.embed.scale == 8.0 and model.output_projection is None
    with pytest.raises(BigseqError, match="contradicts"):
        parse_model_flags("--decoder-learned-pos", archs.llama_tiny())


def test_fairseq_no_flags_set_their_field():
    cfg = parse_model_flags("--no-scale-embedding --no-decoder-final-norm", archs.transformer_lm())
    assert cfg.no_scale_embedding and cfg.no_decoder_final_norm
