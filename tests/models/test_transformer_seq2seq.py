"""The encoder-decoder ``transformer`` family: fairseq's archs, positions, padding, tying, decoding, init."""

import dataclasses
import math
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

import bigseq.models  # noqa: F401  (registers the families)
from bigseq.config.flags import build_config
from bigseq.config.train_config import parse_train_config, train_config_from_dict, train_config_to_dict
from bigseq.errors import BigseqError
from bigseq.models.family import get_family
from bigseq.models.transformer import architectures as archs
from bigseq.models.transformer.config import DecoderConfig, EncoderConfig, TransformerConfig
from bigseq.models.transformer.init_rules import init_rules
from bigseq.models.transformer.model import TransformerModel
from bigseq.modules.init import init_value, zero_row

PAD, EOS = 1, 2
TASK = SimpleNamespace(src_vocab_size=40, tgt_vocab_size=48, pad_idx=PAD, joined_dictionary=False)
JOINED = SimpleNamespace(src_vocab_size=40, tgt_vocab_size=40, pad_idx=PAD, joined_dictionary=True)


def tiny(**changes) -> TransformerConfig:
    """2 + 2 layers of 32, no dropout."""
    cfg = TransformerConfig(encoder=EncoderConfig(embed_dim=32, ffn_embed_dim=48, layers=2, attention_heads=4),
                            decoder=DecoderConfig(layers=2, attention_heads=4), dropout=0.0)
    return dataclasses.replace(cfg, **changes)


def prenorm() -> TransformerConfig:
    cfg = tiny()
    return dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, normalize_before=True),
                               decoder=dataclasses.replace(cfg.decoder, normalize_before=True))


def learned() -> TransformerConfig:
    cfg = tiny(layernorm_embedding=True, max_source_positions=12, max_target_positions=10)
    return dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, learned_pos=True),
                               decoder=dataclasses.replace(cfg.decoder, learned_pos=True))


VARIANTS = {"postnorm": tiny, "prenorm": prenorm, "learned": learned}


def build(cfg: TransformerConfig, task=TASK, seed: int = 3) -> TransformerModel:
    return TransformerModel.build(cfg, task, seed=seed).eval()


def pad_batch(rows: list[list[int]], left: bool, extra: int = 0) -> torch.Tensor:
    width = max(map(len, rows)) + extra
    return torch.tensor([[PAD] * (width - len(r)) + r if left else r + [PAD] * (width - len(r)) for r in rows])


SOURCES = [[5, 6, 7, 8, 9, EOS], [10, 11, EOS], [12, 13, 14, EOS]]
PREV = torch.tensor([[EOS, 20, 21, 22], [EOS, 23, 24, 25], [EOS, 26, 27, 28]])


def logits(model, src: torch.Tensor, prev: torch.Tensor = PREV) -> torch.Tensor:
    return model(src, src.ne(PAD).sum(1), prev)


# architectures and flags ------------------------------------------------------
@pytest.mark.parametrize("arch, want", [
    (archs.transformer, dict(layers=(6, 6), dims=(512, 512), ffn=(2048, 2048), heads=(8, 8), pre=(False, False),
                             dropout=(0.1, 0.0, 0.0))),
    (archs.transformer_tiny, dict(layers=(2, 2), dims=(64, 64), ffn=(64, 64), heads=(2, 2), pre=(False, False),
                                  dropout=(0.1, 0.0, 0.0))),
    (archs.transformer_iwslt_de_en, dict(layers=(6, 6), dims=(512, 512), ffn=(1024, 1024), heads=(4, 4),
                                         pre=(False, False), dropout=(0.1, 0.0, 0.0))),
    (archs.transformer_wmt_en_de, dict(layers=(6, 6), dims=(512, 512), ffn=(2048, 2048), heads=(8, 8),
                                       pre=(False, False), dropout=(0.1, 0.0, 0.0))),
    (archs.transformer_vaswani_wmt_en_de_big, dict(layers=(6, 6), dims=(1024, 1024), ffn=(4096, 4096),
                                                   heads=(16, 16), pre=(False, False), dropout=(0.3, 0.0, 0.0))),
    (archs.transformer_vaswani_wmt_en_fr_big, dict(layers=(6, 6), dims=(1024, 1024), ffn=(4096, 4096),
                                                   heads=(16, 16), pre=(False, False), dropout=(0.1, 0.0, 0.0))),
    (archs.transformer_wmt_en_de_big, dict(layers=(6, 6), dims=(1024, 1024), ffn=(4096, 4096), heads=(16, 16),
                                           pre=(False, False), dropout=(0.3, 0.1, 0.0))),
    (archs.transformer_wmt_en_de_big_t2t, dict(layers=(6, 6), dims=(1024, 1024), ffn=(4096, 4096), heads=(16, 16),
                                               pre=(True, True), dropout=(0.3, 0.1, 0.1))),
])
def test_named_architectures_have_fairseqs_values(arch, want):
    cfg = arch()
    enc, dec = cfg.encoder, cfg.decoder
    assert (enc.layers, dec.layers) == want["layers"]
    assert (enc.embed_dim, cfg.decoder_dim) == want["dims"]
    assert (enc.ffn_embed_dim, cfg.decoder_ffn_dim) == want["ffn"]
    assert (enc.attention_heads, dec.attention_heads) == want["heads"]
    assert (enc.normalize_before, dec.normalize_before) == want["pre"]
    assert (cfg.dropout, cfg.attention_dropout, cfg.activation_dropout) == want["dropout"]
    assert (cfg.activation_fn, cfg.max_source_positions, cfg.max_target_positions) == ("relu", 1024, 1024)
    assert not (cfg.share_all_embeddings or cfg.share_decoder_input_output_embed or cfg.no_scale_embedding
                or cfg.layernorm_embedding or enc.learned_pos or dec.learned_pos)


def test_flags_are_fairseqs_and_the_decoder_follows_the_encoder_where_fairseq_does():
    cfg = parse_train_config(["data-bin", "--arch", "transformer_tiny", "--batch-size", "8",
                              "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "40", "--decoder-layers", "3",
                              "--share-all-embeddings", "--decoder-normalize-before", "--activation-dropout", "0.2"])
    assert cfg.names["model"] == "transformer"
    m = cfg.model
    assert (m.decoder_dim, m.decoder_ffn_dim, m.decoder.layers, m.encoder.layers) == (32, 40, 3, 2)
    assert m.share_all_embeddings and m.decoder.normalize_before and m.activation_dropout == 0.2
    assert train_config_from_dict(train_config_to_dict(cfg)).model == m  # a checkpoint's saved config
    # iwslt names its decoder sizes: an encoder flag leaves them (fairseq's transformer_iwslt_de_en)
    iwslt = build_config(TransformerConfig, archs.transformer_iwslt_de_en(), {"encoder_embed_dim": 256})
    assert (iwslt.encoder.embed_dim, iwslt.decoder_dim) == (256, 512)
    assert get_family("transformer").runtime_fields == {"dropout", "attention_dropout", "activation_dropout",
                                                        "attention_impl", "checkpoint_activations"}


# forward and padding ------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_shapes_and_the_final_norm_of_pre_norm_only(variant):
    model = build(VARIANTS[variant]())
    out = logits(model, pad_batch(SOURCES, left=True))
    assert out.shape == (3, 4, TASK.tgt_vocab_size) and torch.isfinite(out).all()
    names = {n for n, _ in model.named_parameters()}
    has_final = variant == "prenorm"
    assert ("encoder.final_norm.weight" in names) == ("decoder.final_norm.weight" in names) == has_final
    assert ("encoder.embed_positions.weight" in names) == (variant == "learned")
    if variant == "learned":  # fairseq's table: max_positions + pad_idx + 1 rows
        assert model.encoder.embed_positions.weight.shape[0] == 12 + PAD + 1
        assert model.decoder.embed_positions.weight.shape[0] == 10 + PAD + 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_left_and_right_padding_give_the_same_logits(variant):
    model = build(VARIANTS[variant]())
    left, right = logits(model, pad_batch(SOURCES, left=True)), logits(model, pad_batch(SOURCES, left=False))
    torch.testing.assert_close(left, right, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_padded_source_positions_never_reach_the_outputs(variant):
    model = build(VARIANTS[variant]())
    want = logits(model, pad_batch(SOURCES, left=True))
    for extra, left in ((3, True), (2, False)):
        torch.testing.assert_close(logits(model, pad_batch(SOURCES, left, extra)), want, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # whatever the pad row holds: the encoder zeroes padded rows and masks them as keys
        model.encoder.embed_tokens.weight[PAD].normal_(0, 3.0)
    torch.testing.assert_close(logits(model, pad_batch(SOURCES, left=True, extra=2)), want, atol=1e-5, rtol=1e-5)


def test_right_padded_targets_do_not_change_the_logits_of_real_tokens():
    model = build(tiny())
    src = pad_batch(SOURCES, left=True)
    prev = PREV.clone()
    prev[1, 2:] = PAD
    torch.testing.assert_close(logits(model, src, prev)[1, :2], logits(model, src[1:2], PREV[1:2, :2])[0])


def test_sinusoidal_positions_equal_fairseqs_table_and_make_positions():
    def fairseq_get_embedding(num_embeddings, embedding_dim, padding_idx):
        half_dim = embedding_dim // 2
        emb = math.log(10000) / (half_dim - 1)
        emb = torch.exp(torch.arange(half_dim, dtype=torch.float) * -emb)
        emb = torch.arange(num_embeddings, dtype=torch.float).unsqueeze(1) * emb.unsqueeze(0)
        emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1).view(num_embeddings, -1)
        emb[padding_idx, :] = 0
        return emb

    def fairseq_make_positions(tensor, padding_idx):
        mask = tensor.ne(padding_idx).int()
        return (torch.cumsum(mask, dim=1).type_as(mask) * mask).long() + padding_idx

    model = build(tiny(no_scale_embedding=True))
    with torch.no_grad():  # the embedding's output is then its positions alone
        model.encoder.embed_tokens.weight.zero_()
    src = pad_batch([[5] * 30, [6] * 7 + [EOS]], left=True)
    table = fairseq_get_embedding(1024 + PAD + 1, 32, PAD)
    want = table[fairseq_make_positions(src, PAD)]
    from bigseq.models.transformer.parts import make_positions
    assert torch.equal(model.encoder.embed(src, make_positions(src, PAD)), want)


# decoding -------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_incremental_decoding_with_reordered_beams_equals_the_full_forward(variant):
    model = build(VARIANTS[variant]())
    src = pad_batch(SOURCES, left=True)
    torch.manual_seed(0)
    beam_src = torch.tensor([0, 0, 1, 2, 2])  # the source row of each beam
    encoder_out = model.encode(src, src.ne(PAD).sum(1)).select(beam_src)
    cache = model.make_kv_cache(len(beam_src), 8)
    history = torch.full((len(beam_src), 1), EOS)
    with torch.no_grad():
        for step in range(6):
            step_logits = model.decode(history[:, -1:], encoder_out, kv_cache=cache, start_pos=step)
            full = logits(model, src[beam_src], history)
            torch.testing.assert_close(step_logits[:, 0], full[:, -1], atol=1e-5, rtol=1e-5)
            # beams move between rows (within and across sentences' groups, repeats included)
            order = torch.randint(0, len(beam_src), (len(beam_src),))
            model.reorder_kv_cache(cache, order)
            history, beam_src = history[order], beam_src[order]
            history = torch.cat([history, torch.randint(4, 48, (len(beam_src), 1))], dim=1)


def test_decoding_past_the_learned_table_is_one_line():
    model = build(learned())
    src = pad_batch(SOURCES, left=True)
    encoder_out = model.encode(src)
    with pytest.raises(BigseqError, match="beyond --max-target-positions 10"):
        model.decode(torch.full((3, 1), EOS), encoder_out, kv_cache=model.make_kv_cache(3, 12), start_pos=10)
    with pytest.raises(BigseqError, match="longer than --max-source-positions 12"):
        model.encode(torch.full((1, 13), 5))


def test_the_label_smoothed_loss_is_the_same_fused_or_not():
    from bigseq.criterions.label_smoothed_cross_entropy import (
        LabelSmoothedCrossEntropyConfig,
        LabelSmoothedCrossEntropyCriterion,
    )
    model = build(tiny(share_decoder_input_output_embed=True))
    src, target = pad_batch(SOURCES, left=True), torch.cat([PREV[:, 1:], torch.full((3, 1), EOS)], dim=1)
    target[1, 2:] = PAD
    sample = SimpleNamespace(net_input=dict(src_tokens=src, src_lengths=src.ne(PAD).sum(1), prev_output_tokens=PREV),
                             targets=target, ntokens=int(target.ne(PAD).sum()), nsentences=3)
    losses = [LabelSmoothedCrossEntropyCriterion(LabelSmoothedCrossEntropyConfig(
        label_smoothing=0.1, fused_linear_ce=fused, loss_impl="torch"), TASK)(model, sample)[0] for fused in (0, 1)]
    torch.testing.assert_close(losses[0], losses[1])
    assert model.max_positions == (1024, 1024)


# tying and init ----------------------------------------------------------------------
def test_share_all_embeddings_is_one_parameter_for_encoder_decoder_and_output():
    model = build(tiny(share_all_embeddings=True), JOINED)
    table = model.encoder.embed_tokens.weight
    assert model.decoder.embed_tokens is model.encoder.embed_tokens and model.output_weight is table
    names = [n for n, _ in model.named_parameters()]
    assert "encoder.embed_tokens.weight" in names and not any("embed_tokens" in n for n in names
                                                              if n.startswith("decoder"))
    assert "decoder.output_projection.weight" not in model.state_dict()
    assert model.state_dict()["decoder.embed_tokens.weight"].data_ptr() == table.data_ptr()
    out = logits(model, pad_batch(SOURCES, left=True))
    out.sum().backward()
    assert table.grad is not None and table.grad.abs().sum() > 0


def test_share_decoder_input_output_ties_only_the_decoder():
    model = build(tiny(share_decoder_input_output_embed=True))
    assert model.output_weight is model.decoder.embed_tokens.weight
    assert model.encoder.embed_tokens is not model.decoder.embed_tokens
    assert "decoder.output_projection.weight" not in dict(model.named_parameters())


@pytest.mark.parametrize("variant", VARIANTS)
def test_weights_are_a_function_of_seed_and_name_with_zero_padding_rows(variant):
    cfg = VARIANTS[variant]()
    model = build(cfg, seed=7)
    rules = init_rules(cfg)
    for name, param in model.named_parameters():
        want = init_value(name, tuple(param.shape), 7, rules)
        if "embed_" in name:
            want[PAD] = 0
        assert torch.equal(param.detach(), want), name
    # a deeper decoder shares every name of the shallower one, with the same values
    deeper = build(dataclasses.replace(cfg, decoder=dataclasses.replace(cfg.decoder, layers=3)), seed=7)
    shallow = dict(model.named_parameters())
    for name, param in deeper.named_parameters():
        if name in shallow:
            assert torch.equal(param, shallow[name]), name


def test_init_follows_fairseqs_distributions():
    cfg = tiny(encoder=EncoderConfig(embed_dim=256, ffn_embed_dim=512, layers=1, attention_heads=4),
               decoder=DecoderConfig(embed_dim=128, layers=1, attention_heads=4))
    params = {n: p.detach() for n, p in build(cfg).named_parameters()}
    def bound(name):
        return float(params[name].abs().max())
    assert abs(float(params["encoder.embed_tokens.weight"][2:].std()) - 256 ** -0.5) < 0.01
    assert abs(float(params["decoder.output_projection.weight"].std()) - 128 ** -0.5) < 0.01
    assert 0.95 < bound("encoder.layers.0.attn.q_proj.weight") / math.sqrt(6 / 512 / 2) <= 1  # gain 1/sqrt(2)
    assert 0.95 < bound("decoder.layers.0.cross_attn.k_proj.weight") / math.sqrt(6 / 384) <= 1  # other widths: 1
    assert 0.95 < bound("encoder.layers.0.ffn.down_proj.weight") * math.sqrt(512) <= 1  # torch's default Linear
    assert not params["encoder.layers.0.attn.out_proj.bias"].any()
    assert params["encoder.embed_tokens.weight"][PAD].abs().sum() == 0


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_zero_row_zeroes_the_part_of_the_row_a_zero3_slice_holds(monkeypatch, rank):
    full = torch.randn(5, 7)  # 35 elements in 3 slices of 12 (DeepSpeed pads the last)
    padded = torch.cat([full.flatten(), torch.zeros(1)])
    shard = padded[rank * 12:(rank + 1) * 12].clone()
    shard.ds_numel = 12
    param = nn.Parameter(torch.empty(0))
    param.ds_tensor, param.ds_shape, param.ds_numel, param.ds_process_group = shard, full.shape, 35, None
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: rank)
    zero_row(param, 2)
    want = full.clone()
    want[2] = 0
    assert torch.equal(shard, torch.cat([want.flatten(), torch.zeros(1)])[rank * 12:(rank + 1) * 12])


_ZERO3 = textwrap.dedent("""
    import os
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(20000 + os.getpid() % 20000), RANK="0",
                      WORLD_SIZE="1", LOCAL_RANK="0")
    from bigseq.distributed import name_accelerator
    name_accelerator()
    import dataclasses
    from types import SimpleNamespace
    import deepspeed, torch
    from bigseq.distributed.zero3 import init_context
    from bigseq.models.transformer.architectures import transformer_tiny
    from bigseq.models.transformer.model import TransformerModel
    torch.distributed.init_process_group("gloo")
    task = SimpleNamespace(src_vocab_size=40, tgt_vocab_size=40, pad_idx=1, joined_dictionary=True)
    cfg = dataclasses.replace(transformer_tiny(), share_all_embeddings=True)
    with init_context({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}}):
        sharded = TransformerModel.build(cfg, task, seed=4)
    want = dict(TransformerModel.build(cfg, task, seed=4).named_parameters())
    assert [n for n, _ in sharded.named_parameters()] == list(want)
    assert all(hasattr(p, "ds_tensor") for p in sharded.parameters())
    with deepspeed.zero.GatheredParameters(list(sharded.parameters())):
        for name, p in sharded.named_parameters():
            assert torch.equal(p.detach().cpu(), want[name].detach()), name
    print("built", len(want))
""")


def test_zero3_init_builds_the_unsharded_weights_in_one_process():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _ZERO3], capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0 and "built 85" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]


# one-line errors ---------------------------------------------------------------------
@pytest.mark.parametrize("make, task, match", [
    (lambda: tiny(share_all_embeddings=True, decoder=DecoderConfig(embed_dim=64, layers=2, attention_heads=4)),
     JOINED, r"--share-all-embeddings needs --encoder-embed-dim \(32\) to equal --decoder-embed-dim \(64\)"),
    (lambda: tiny(share_all_embeddings=True), TASK, "--share-all-embeddings needs a joined dictionary"),
    (lambda: tiny(share_all_embeddings=True),  # equal sizes, two dictionaries
     SimpleNamespace(src_vocab_size=40, tgt_vocab_size=40, pad_idx=PAD, joined_dictionary=False),
     "needs a joined dictionary"),
    (archs.transformer_wmt_en_de_big, TASK, "--attention-dropout 0.1 is not supported .* --attention-dropout 0"),
    (lambda: tiny(encoder=EncoderConfig(embed_dim=30, attention_heads=4)), TASK,
     "--encoder-embed-dim 30 is not divisible by --encoder-attention-heads 4"),
    (lambda: tiny(decoder=DecoderConfig(embed_dim=35, attention_heads=5)), TASK,
     "sinusoidal positions need an even --decoder-embed-dim, got 35"),
    (lambda: tiny(dropout=1.0), TASK, r"--dropout must be in \[0, 1\), got 1.0"),
    (lambda: tiny(decoder=DecoderConfig(layers=0)), TASK, "--decoder-layers must be >= 1, got 0"),
])
def test_bad_configs_are_one_line_naming_the_flag(make, task, match):
    with pytest.raises(BigseqError, match=match) as err:
        TransformerModel.build(make(), task)
    assert "\n" not in str(err.value)


def test_pipeline_parallelism_is_refused_naming_the_family():
    with pytest.raises(BigseqError, match="not supported for the transformer family .*--arch transformer_tiny"):
        get_family("transformer").check_pipeline("transformer_tiny")


def test_family_sizes_and_flops():
    family, cfg = get_family("transformer"), archs.transformer_iwslt_de_en()
    d = family.dims(cfg)
    assert (d.layers, d.dim, d.ffn_dim, d.heads, d.gated_ffn) == (12, 512, 1024, 4, False)
    assert family.flops_per_token(cfg, 1000, 64) == 6.0 * 1000 + 12.0 * (6 * 512 + 2 * 6 * 512) * 64


def test_checkpointed_activations_give_the_same_gradients():
    src = pad_batch(SOURCES, left=True)
    grads = []
    for recompute in (False, True):
        model = TransformerModel.build(tiny(checkpoint_activations=recompute, activation_dropout=0.0), TASK).train()
        logits(model, src).square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)
