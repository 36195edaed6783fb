"""bigseq transformer (encoder-decoder) == transformers FSMT / M2M100 on the same weights.

Tiny random HF models built from configs (no download): 2 encoder and 3 decoder layers of 32 (the
stacks differ so a per-stack layer count shows), every tensor random but the sinusoidal tables.
Sources are left-padded as fairseq pads them; both sides count positions past the pads, so a padded
row equals the same row alone. FSMT needs ``use_cache=False`` for teacher-forced logits (without it
FSMTModel builds no causal mask). transformers is imported inside the tests only: its model modules
import triton, which the kernel tests set up for the interpreter during collection.
"""

import dataclasses
import json
import os

import pytest
import torch

import bigseq.models  # noqa: F401  (registers the families)
from bigseq.errors import BigseqError
from bigseq.models.transformer.config import DecoderConfig, EncoderConfig, TransformerConfig
from bigseq.models.transformer.hf import (
    adapter_for_cfg,
    cfg_from_hf_config,
    from_hf_state_dict,
    hf_config_from_cfg,
    to_hf_state_dict,
)
from bigseq.models.transformer.model import TransformerModel

pytest.importorskip("transformers")
PAD, EOS, TOL = 1, 2, 1e-4
POST = TransformerConfig(encoder=EncoderConfig(embed_dim=32, ffn_embed_dim=48, layers=2, attention_heads=4),
                         decoder=DecoderConfig(ffn_embed_dim=40, layers=3, attention_heads=2), dropout=0.0)
PRE = dataclasses.replace(POST, share_all_embeddings=True,
                          encoder=dataclasses.replace(POST.encoder, normalize_before=True),
                          decoder=dataclasses.replace(POST.decoder, normalize_before=True))
# name: (config, source and target vocabulary, HF model type)
CASES = {
    "fsmt_separate_vocabularies": (POST, (40, 48), "fsmt"),
    "fsmt_share_all": (dataclasses.replace(POST, share_all_embeddings=True), (40, 40), "fsmt"),
    "fsmt_unscaled_embeddings": (dataclasses.replace(POST, no_scale_embedding=True), (40, 48), "fsmt"),
    "m2m100_prenorm_joined": (PRE, (40, 40), "m2m_100"),
}
TIED_OUTPUT = dataclasses.replace(POST, share_decoder_input_output_embed=True)  # FSMT unties it on export
SRC = [[5, 6, 7, 8, 9, 10, 11, EOS], [12, 13, 14, EOS], [15, 16, 17, 18, 19, EOS]]
PREV = torch.tensor([[EOS, 20, 21, 22, 23, 24], [EOS, 25, 26, 27, 28, 29], [EOS, 30, 31, 32, 33, 34]])


def left_padded(rows: list[list[int]]) -> torch.Tensor:
    width = max(map(len, rows))
    return torch.tensor([[PAD] * (width - len(r)) + r for r in rows])


def random_hf_model(cfg, vocab):
    import transformers
    hf_config = hf_config_from_cfg(cfg, src_vocab_size=vocab[0], tgt_vocab_size=vocab[1])
    torch.manual_seed(0)
    model = transformers.AutoModelForSeq2SeqLM.from_config(hf_config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" not in name:  # FSMT's sinusoidal tables are parameters
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in name else 0.0))
    return model


def ours_from(hf, vocab) -> TransformerModel:
    cfg = cfg_from_hf_config(hf.config)
    ours = TransformerModel(cfg, src_vocab_size=vocab[0], tgt_vocab_size=vocab[1], pad_idx=PAD).eval()
    ours.load_state_dict(from_hf_state_dict(hf.state_dict(), cfg))
    return ours


def hf_logits(hf, src, prev, **kwargs):
    return hf(input_ids=src, attention_mask=src.ne(PAD), decoder_input_ids=prev, use_cache=False, **kwargs).logits


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_hf_on_left_padded_sources(case):
    cfg, vocab, model_type = CASES[case]
    hf = random_hf_model(cfg, vocab)
    assert hf.config.model_type == model_type
    ours = ours_from(hf, vocab)
    assert ours.cfg == cfg
    src = left_padded(SRC)
    with torch.no_grad():
        expected, got = hf_logits(hf, src, PREV), ours(src, None, PREV)
        assert expected.abs().max() > 0.1
        torch.testing.assert_close(got, expected, rtol=TOL, atol=TOL)
        alone = torch.tensor([SRC[1]])  # the shortest row without its pads: the same logits on both sides
        torch.testing.assert_close(hf_logits(hf, alone, PREV[1:2]), expected[1:2], rtol=TOL, atol=TOL)
        torch.testing.assert_close(ours(alone, None, PREV[1:2]), got[1:2], rtol=TOL, atol=TOL)
        if model_type == "fsmt":  # the gotcha: FSMT's default use_cache=True leaves out the causal mask
            cached = hf(input_ids=src, attention_mask=src.ne(PAD), decoder_input_ids=PREV).logits
            assert (cached - expected).abs().max() > 100 * TOL


def test_no_scale_embedding_changes_the_logits():
    hf = random_hf_model(*CASES["fsmt_unscaled_embeddings"][:2])
    scaled = TransformerModel(POST, src_vocab_size=40, tgt_vocab_size=48, pad_idx=PAD).eval()
    scaled.load_state_dict(ours_from(hf, (40, 48)).state_dict())
    src = left_padded(SRC)
    with torch.no_grad():
        assert (scaled(src, None, PREV) - hf_logits(hf, src, PREV)).abs().max() > 100 * TOL


@pytest.mark.parametrize("case", list(CASES))
def test_greedy_generation_matches_hf_generate(case):
    cfg, vocab, _ = CASES[case]
    hf = random_hf_model(cfg, vocab)
    ours = ours_from(hf, vocab)
    src, new = left_padded(SRC), 10
    expected = hf.generate(input_ids=src, attention_mask=src.ne(PAD), do_sample=False, num_beams=1,
                           max_new_tokens=new, min_new_tokens=new, forced_eos_token_id=None)
    assert expected.shape == (3, new + 1) and (expected[:, 0] == EOS).all()  # decoding starts from eos
    with torch.no_grad():  # greedy over the model API: encode once, then one token per step through the cache
        encoder_out = ours.encode(src)
        cache = ours.make_kv_cache(len(SRC), new + 1)
        tokens = torch.full((len(SRC), 1), EOS)
        for step in range(new):
            logits = ours.decode(tokens[:, -1:], encoder_out, kv_cache=cache, start_pos=step)[:, -1]
            logits[:, EOS] = -float("inf")  # what min_new_tokens does in HF
            tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    assert tokens.tolist() == expected.tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", list(CASES))
def test_state_dicts_round_trip_bit_for_bit(case, dtype):
    cfg, vocab, _ = CASES[case]
    hf = random_hf_model(cfg, vocab).to(dtype)
    hf_sd = hf.state_dict()
    again = to_hf_state_dict(from_hf_state_dict(hf_sd, cfg), cfg)
    assert again.keys() == hf_sd.keys()
    for name, t in hf_sd.items():
        assert again[name].dtype == t.dtype and torch.equal(again[name], t), name
    ours = TransformerModel(cfg, src_vocab_size=vocab[0], tgt_vocab_size=vocab[1], pad_idx=PAD)
    ours.reset_parameters(5)
    ours = ours.to(dtype)
    hf.load_state_dict(to_hf_state_dict(ours, cfg), strict=True)  # exactly HF's keys and shapes
    back = from_hf_state_dict(hf.state_dict(), cfg)
    assert back.keys() == ours.state_dict().keys()
    assert all(torch.equal(back[k], t) for k, t in ours.state_dict().items())


def test_a_tied_output_exports_to_fsmt_as_a_copy_with_the_same_logits():
    ours = TransformerModel(TIED_OUTPUT, src_vocab_size=40, tgt_vocab_size=48, pad_idx=PAD).eval()
    ours.reset_parameters(7)
    hf = random_hf_model(TIED_OUTPUT, (40, 48))
    assert not hf.config.tie_word_embeddings  # FSMT's tie would also tie the encoder's table
    hf.load_state_dict(to_hf_state_dict(ours, TIED_OUTPUT), strict=True)
    src = left_padded(SRC)
    with torch.no_grad():
        torch.testing.assert_close(ours(src, None, PREV), hf_logits(hf, src, PREV), rtol=TOL, atol=TOL)
    assert cfg_from_hf_config(hf.config) == dataclasses.replace(TIED_OUTPUT, share_decoder_input_output_embed=False)
    back = from_hf_state_dict(hf.state_dict(), TIED_OUTPUT)  # back into the tied config: one table again
    assert all(torch.equal(back[k], t) for k, t in ours.state_dict().items())


@pytest.mark.parametrize("case", list(CASES))
def test_configs_round_trip_through_config_json(case, tmp_path):
    import transformers
    cfg, vocab, model_type = CASES[case]
    cfg = dataclasses.replace(cfg, dropout=0.1, activation_dropout=0.05)
    hf_config = hf_config_from_cfg(cfg, src_vocab_size=vocab[0], tgt_vocab_size=vocab[1])
    assert cfg_from_hf_config(hf_config) == cfg
    hf_config.save_pretrained(tmp_path)
    saved = transformers.AutoConfig.from_pretrained(tmp_path)
    assert saved.model_type == model_type and cfg_from_hf_config(saved) == cfg
    c = json.loads((tmp_path / "config.json").read_text())
    assert cfg_from_hf_config(c) == cfg  # the file alone: values left at their defaults are left out of it
    assert (c["bos_token_id"], c["pad_token_id"], c["eos_token_id"], c["decoder_start_token_id"]) == (0, 1, 2, 2)


def hf_dict(case, **changes):
    cfg, vocab, _ = CASES[case]
    return {**hf_config_from_cfg(cfg, src_vocab_size=vocab[0], tgt_vocab_size=vocab[1]).to_dict(), **changes}


REFUSED_IMPORTS = {  # config.json values bigseq does not compute: (case, changes, what the line names)
    "marian": ("fsmt_separate_vocabularies", {"model_type": "marian"}, "model_type='marian'"),
    "bart": ("m2m100_prenorm_joined", {"model_type": "bart"}, "learned positions"),
    "mbart": ("m2m100_prenorm_joined", {"model_type": "mbart"}, "model_type='mbart'"),
    "t5": ("m2m100_prenorm_joined", {"model_type": "t5"}, "model_type='t5'"),
    "fsmt_gelu": ("fsmt_separate_vocabularies", {"activation_function": "gelu"}, "activation_function"),
    "m2m100_gelu": ("m2m100_prenorm_joined", {"activation_function": "gelu"}, "activation_function"),
    "m2m100_untied": ("m2m100_prenorm_joined", {"tie_word_embeddings": False}, "tie_word_embeddings"),
    "fsmt_tied_unequal_vocabularies": ("fsmt_separate_vocabularies", {"tie_word_embeddings": True},
                                       "tie_word_embeddings"),
    "no_pad": ("fsmt_separate_vocabularies", {"pad_token_id": None}, "pad_token_id"),
}


@pytest.mark.parametrize("name", list(REFUSED_IMPORTS))
def test_unsupported_hf_configs_are_one_line_naming_the_field(name):
    case, changes, field = REFUSED_IMPORTS[name]
    with pytest.raises(BigseqError) as e:
        cfg_from_hf_config(hf_dict(case, **changes))
    assert field in str(e.value) and "\n" not in str(e.value)


def _sides(cfg, **changes):
    return dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, **changes),
                               decoder=dataclasses.replace(cfg.decoder, **changes))


REFUSED_EXPORTS = {  # (config, model type asked for or None, what the line names)
    "prenorm_to_fsmt": (PRE, "fsmt", "--encoder-normalize-before True"),
    "postnorm_to_m2m100": (dataclasses.replace(POST, share_all_embeddings=True), "m2m_100",
                           "--encoder-normalize-before False"),
    "separate_vocabularies_to_m2m100": (dataclasses.replace(PRE, share_all_embeddings=False), "m2m_100",
                                        "--share-all-embeddings"),
    "gelu": (dataclasses.replace(POST, activation_fn="gelu"), None, "--activation-fn gelu"),
    "learned_positions": (_sides(POST, learned_pos=True), None, "positions are learned"),
    "no_positions": (dataclasses.replace(POST, no_token_positional_embeddings=True), None, "positions are none"),
    "layernorm_embedding": (dataclasses.replace(POST, layernorm_embedding=True), None, "--layernorm-embedding"),
    "decoder_width": (dataclasses.replace(POST, decoder=dataclasses.replace(POST.decoder, embed_dim=64)), None,
                      "--decoder-embed-dim 64"),
    "max_positions": (dataclasses.replace(POST, max_target_positions=512), None, "--max-target-positions 512"),
    "mixed_norms": (dataclasses.replace(PRE, decoder=POST.decoder), None, "--decoder-normalize-before"),
}


@pytest.mark.parametrize("name", list(REFUSED_EXPORTS))
def test_configs_no_hf_model_type_computes_are_refused_on_export_naming_the_flag(name):
    cfg, model_type, flag = REFUSED_EXPORTS[name]
    with pytest.raises(BigseqError) as e:
        hf_config_from_cfg(cfg, model_type, src_vocab_size=40, tgt_vocab_size=40)
    assert flag in str(e.value) and "\n" not in str(e.value)


def test_export_picks_the_one_model_type_that_computes_the_config():
    assert adapter_for_cfg(POST).model_type == "fsmt"
    assert adapter_for_cfg(PRE).model_type == "m2m_100"
    assert adapter_for_cfg(dataclasses.replace(POST, share_all_embeddings=True)).model_type == "fsmt"


def test_trained_fsmt_positions_are_refused_on_import():
    hf = random_hf_model(*CASES["fsmt_separate_vocabularies"][:2])
    sd = hf.state_dict()
    sd["model.encoder.embed_positions.weight"] = sd["model.encoder.embed_positions.weight"] + 0.1
    with pytest.raises(BigseqError, match="embed_positions") as e:
        from_hf_state_dict(sd, POST)
    assert "\n" not in str(e.value)
    del sd["model.encoder.embed_positions.weight"], sd["model.decoder.embed_positions.weight"]
    from_hf_state_dict(sd, POST)  # files of transformers 4 have no tables: nothing to check


@pytest.mark.parametrize("case", list(CASES))
def test_sharded_folders_convert_both_ways_with_the_same_logits(case, tmp_path):
    """save_pretrained with small shards -> from-hf (streamed) -> logits; to-hf -> AutoModelForSeq2SeqLM loads
    the sharded export with the same logits, fairseq's generation_config.json beside it; every tensor comes
    back bit for bit."""
    import transformers

    from bigseq.checkpoint.consolidated import build_consolidated_model
    from bigseq.checkpoint.convert import from_hf, to_hf
    from bigseq.checkpoint.hf_read import TensorReader
    cfg, vocab, model_type = CASES[case]
    hf = random_hf_model(cfg, vocab)
    hf.save_pretrained(tmp_path / "hf", max_shard_size="20KB")
    os.remove(tmp_path / "hf" / "generation_config.json")  # so the export writes bigseq's
    assert len(list((tmp_path / "hf").glob("*.safetensors"))) > 2
    from_hf(str(tmp_path / "hf"), str(tmp_path / "ours"))
    ours = build_consolidated_model(str(tmp_path / "ours"))
    to_hf(str(tmp_path / "ours"), str(tmp_path / "back"), max_shard_size="20KB")
    back = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "back").eval()
    assert type(back).__name__ == {"fsmt": "FSMTForConditionalGeneration",
                                   "m2m_100": "M2M100ForConditionalGeneration"}[model_type]
    src = left_padded(SRC)
    with torch.no_grad():
        expected = hf_logits(hf, src, PREV)
        torch.testing.assert_close(ours(src, None, PREV), expected, rtol=TOL, atol=TOL)
        torch.testing.assert_close(hf_logits(back, src, PREV), expected, rtol=TOL, atol=TOL)
    with TensorReader(str(tmp_path / "hf")) as a, TensorReader(str(tmp_path / "back")) as b:
        assert set(a.names()) == set(b.names())
        assert all(torch.equal(a.get(n), b.get(n)) for n in a.names())
    generation = json.loads((tmp_path / "back" / "generation_config.json").read_text())
    assert generation["decoder_start_token_id"] == EOS and generation["num_beams"] == 5
    assert generation["early_stopping"] is True and generation["forced_eos_token_id"] == EOS
    assert transformers.GenerationConfig.from_pretrained(tmp_path / "back").early_stopping is True


@pytest.mark.parametrize("case", ["fsmt_share_all", "m2m100_prenorm_joined"])
def test_finetune_from_an_hf_folder_reads_every_parameter_once(case, tmp_path):
    """--finetune-from-model HF_DIR: the folder's architecture and its weights, group by group, in the names
    of the model's parameters (a shared table once)."""
    from bigseq.checkpoint.pretrained import model_of_folder, vocab_size_of_folder, weight_source
    cfg, vocab, model_type = CASES[case]
    hf = random_hf_model(cfg, vocab)
    hf.save_pretrained(tmp_path)
    name, arch, saved_cfg = model_of_folder(str(tmp_path))
    assert (name, arch, saved_cfg, vocab_size_of_folder(str(tmp_path))) == ("transformer", f"hf:{model_type}",
                                                                           cfg, vocab[1])
    model = TransformerModel(cfg, src_vocab_size=vocab[0], tgt_vocab_size=vocab[1], pad_idx=PAD).eval()
    params = dict(model.named_parameters())
    source = weight_source(str(tmp_path), saved_cfg)
    source.check_present()
    assert sorted(source.names()) == sorted(params)
    with torch.no_grad():
        for i in range(len(source.groups)):
            for param_name, tensor in source.read(i).items():
                params[param_name].copy_(tensor)
    source.close()
    src = left_padded(SRC)
    with torch.no_grad():
        torch.testing.assert_close(model(src, None, PREV), hf_logits(hf, src, PREV), rtol=TOL, atol=TOL)


def test_finetuning_on_data_padded_with_another_id_is_refused(tmp_path):
    from bigseq.checkpoint.pretrained import check_pad
    random_hf_model(*CASES["fsmt_share_all"][:2]).save_pretrained(tmp_path)
    check_pad(str(tmp_path), "transformer", PAD)
    check_pad(str(tmp_path), "transformer_lm", 0)  # decoder-only positions do not count from the pad
    with pytest.raises(BigseqError, match="pads with id 1, the data with 0") as e:
        check_pad(str(tmp_path), "transformer", 0)
    assert "\n" not in str(e.value)


def test_the_task_languages_name_fsmt_langs_and_stay_out_of_m2m100():
    fsmt = hf_config_from_cfg(POST, src_vocab_size=40, tgt_vocab_size=48, langs=["fr", "en"])
    assert fsmt.langs == ["fr", "en"] and (fsmt.src_vocab_size, fsmt.tgt_vocab_size) == (40, 48)
    m2m = hf_config_from_cfg(PRE, src_vocab_size=40, tgt_vocab_size=40, langs=["fr", "en"])
    assert "langs" not in m2m.to_dict() and m2m.vocab_size == 40
    with pytest.raises(BigseqError, match="one vocabulary"):
        hf_config_from_cfg(PRE, src_vocab_size=40, tgt_vocab_size=48)
