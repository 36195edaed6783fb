"""bigseq transformer_lm == transformers Llama 3 / Qwen2 / Qwen3 / Mistral / Phi-3 / Gemma 2 / Gemma 3 (text) /
OLMo 2 on the same weights (litgpt style).

Tiny random HF models built from configs (no download), every tensor random (norms and biases too),
converted with the adapters, fp32 logits at T=24. Each family's feature is shrunk until it matters
(llama3 scaling from 8 pretraining positions, a window of 8, longrope from 16, soft-caps of 5 and 3) and
switching it off in bigseq's config must move the logits far past the tolerance, so no test can pass by
ignoring its feature (the Gemma/OLMo 2 features one by one in test_each_gemma_and_olmo2_feature_matters).
The random norm weights (about 1) make Gemma's 1 + w about 2, so reading w as a plain RMSNorm weight would
fail the parity.
"""

import dataclasses
import json

import pytest
import torch

from bigseq.errors import BigseqError
from bigseq.generation import GenerationConfig, SequenceGenerator
from bigseq.models.transformer_lm.architectures import gpt2_tiny, llama_tiny
from bigseq.models.transformer_lm.hf import (
    adapter_for_cfg,
    cfg_from_hf_config,
    from_hf_state_dict,
    hf_config_from_cfg,
    to_hf_state_dict,
)
from bigseq.models.transformer_lm.model import TransformerLanguageModel

transformers = pytest.importorskip("transformers")
VOCAB, T, TOL = 101, 24, 1e-4
BASE = dataclasses.replace(llama_tiny(), vocab_size=VOCAB)  # 2 layers, dim 64, 4 heads, 2 kv heads
LLAMA3 = dict(rope_scaling="llama3", rope_scaling_factor=8.0, rope_low_freq_factor=1.0, rope_high_freq_factor=4.0,
              rope_original_max_positions=8)
LONGROPE = dict(rope_scaling="longrope", rope_original_max_positions=16,
                rope_short_factor=[1.0 + 0.1 * i for i in range(8)], rope_long_factor=[1.0 + 2.0 * i for i in range(8)])
LONGROPE_PARTIAL = {**LONGROPE, "rope_short_factor": LONGROPE["rope_short_factor"][:6],
                    "rope_long_factor": LONGROPE["rope_long_factor"][:6]}

# Gemma's layer: sandwich norms of its RMSNorm kind, GeGLU-tanh, embeddings scaled by sqrt(d) in their dtype, tied
GEMMA = dict(decoder_normalize_before=False, decoder_norm_placement="sandwich", norm="rmsnorm_unit_offset",
             activation_fn="geglu_tanh", no_scale_embedding=False, embed_scale_in_weight_dtype=True,
             share_decoder_input_output_embed=True)

# name: (bigseq config, HF model type of its checkpoint (what it exports as unless EXPORTED_AS says), the feature
# switched off)
CASES = {
    "llama3_untied": (dataclasses.replace(BASE, **LLAMA3), "llama", {"rope_scaling": "none"}),
    "llama3_tied": (dataclasses.replace(BASE, **LLAMA3, share_decoder_input_output_embed=True), "llama",
                    {"rope_scaling": "none"}),
    "qwen2_qkv_bias": (dataclasses.replace(BASE, attention_qkv_bias=True, rope_theta=1e6), "qwen2",
                       {"attention_qkv_bias": None}),
    "qwen2_window_on_last_layer": (dataclasses.replace(BASE, attention_qkv_bias=True, sliding_window=8,
                                                       sliding_window_layers=[1]), "qwen2",
                                   {"sliding_window": None, "sliding_window_layers": None}),
    "qwen3_qk_norm_head_dim": (dataclasses.replace(BASE, qk_norm="head", decoder_head_dim=24), "qwen3",
                               {"qk_norm": "none"}),
    "qwen3_attention_bias": (dataclasses.replace(BASE, qk_norm="head", decoder_head_dim=24, bias=True,
                                                 mlp_bias=False), "qwen3", {"qk_norm": "none"}),
    "mistral_window": (dataclasses.replace(BASE, sliding_window=8, decoder_head_dim=8), "mistral",
                       {"sliding_window": None}),
    # Phi-3: fused qkv_proj / gate_up_proj; longrope shrunk to 16 pretraining positions so T=24 uses the long
    # factors and generation (6 + 20 tokens) crosses over; 0.75 partial rotary as Phi-4-mini (head 16: 12 rotated)
    "phi3_window": (dataclasses.replace(BASE, sliding_window=8), "phi3", {"sliding_window": None}),
    "phi3_partial_tied": (dataclasses.replace(BASE, rope_partial_factor=0.75, share_decoder_input_output_embed=True),
                          "phi3", {"rope_partial_factor": 1.0}),
    "phi3_longrope": (dataclasses.replace(BASE, **LONGROPE, max_target_positions=64), "phi3", {"rope_scaling": "none"}),
    "phi3_mini_longrope_partial": (dataclasses.replace(BASE, **LONGROPE_PARTIAL, rope_partial_factor=0.75,
                                                       rope_attention_factor=1.2,
                                                       share_decoder_input_output_embed=True),
                                   "phi3", {"rope_scaling": "none"}),
    # Gemma 2 / Gemma 3 / OLMo 2
    "gemma2_softcaps_alternating_window": (dataclasses.replace(
        BASE, **GEMMA, decoder_layers=4, decoder_head_dim=24, query_pre_attn_scalar=32, attn_logit_softcap=5.0,
        final_logit_softcap=3.0, sliding_window=8, sliding_window_layers=[0, 2]), "gemma2",
        {"attn_logit_softcap": None, "final_logit_softcap": None}),
    "gemma3_text_local_global": (dataclasses.replace(
        BASE, **GEMMA, decoder_layers=6, qk_norm="head", rope_theta=1e6, rope_local_theta=1e4, sliding_window=8,
        sliding_window_layers=[0, 1, 2, 3, 4]), "gemma3_text", {"rope_local_theta": None}),
    "gemma3_text_linear_rope_untied": (dataclasses.replace(
        BASE, **{**GEMMA, "share_decoder_input_output_embed": False}, decoder_layers=3, qk_norm="head",
        rope_theta=1e6, rope_local_theta=1e4, rope_scaling="linear", rope_scaling_factor=8.0, sliding_window=8,
        sliding_window_layers=[0, 1], decoder_head_dim=32), "gemma3_text", {"rope_scaling": "none"}),
    "olmo2": (dataclasses.replace(BASE, decoder_normalize_before=False, decoder_norm_placement="output",
                                  norm="rmsnorm_fp32", qk_norm="full", norm_eps=1e-5), "olmo2", {"qk_norm": "none"}),
}
# cases whose checkpoint type is not what export picks: a Phi-3 with default RoPE computes what Mistral does
EXPORTED_AS = {"phi3_window": "mistral"}


def random_hf_model(cfg, model_type=None):
    """The HF model of cfg with every tensor random; no bos/eos, so generation never stops early."""
    hf_config = hf_config_from_cfg(cfg, model_type, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in name else 0.0))
    return model


def converted(hf, cfg=None):
    ours = TransformerLanguageModel(cfg or cfg_from_hf_config(hf.config)).eval()
    ours.load_state_dict(from_hf_state_dict(hf.state_dict(), ours.cfg, hf.config.model_type))
    return ours


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_hf_and_the_feature_matters(case):
    cfg, model_type, off = CASES[case]
    hf = random_hf_model(cfg, model_type)
    assert hf.config.model_type == model_type and adapter_for_cfg(cfg).model_type == EXPORTED_AS.get(case, model_type)
    ours = converted(hf)
    assert ours.cfg == cfg
    tokens = torch.randint(0, VOCAB, (2, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(tokens).logits
        got = ours(tokens)
        assert expected.abs().max() > 0.1  # not two near-zero tensors
        torch.testing.assert_close(got, expected, rtol=TOL, atol=TOL)
        without = TransformerLanguageModel(dataclasses.replace(cfg, **off)).eval()
        sd = ours.state_dict()
        without.load_state_dict({k: sd[k] for k in without.state_dict()})
        assert (without(tokens) - got).abs().max() > 100 * TOL, f"{off} does not change the logits"


@pytest.mark.parametrize("case", list(CASES))
def test_greedy_generation_matches_hf_past_the_window(case):
    cfg, model_type, _ = CASES[case]
    hf = random_hf_model(cfg, model_type)
    ours = converted(hf)
    prompt, new = [5, 17, 42, 8, 99, 3], 20  # 26 positions: well past a window of 8
    expected = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                           do_sample=False, max_new_tokens=new, min_new_tokens=new, pad_token_id=0)
    generator = SequenceGenerator(ours, GenerationConfig(max_new_tokens=new, stop_at_eos=False), eos_idx=None)
    assert generator.generate([prompt]) == [expected[0, len(prompt):].tolist()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", list(CASES))
def test_state_dicts_round_trip_bit_for_bit(case, dtype):
    cfg, model_type, _ = CASES[case]
    hf = random_hf_model(cfg, model_type).to(dtype)
    hf_sd = hf.state_dict()
    again = to_hf_state_dict(from_hf_state_dict(hf_sd, cfg, model_type), cfg, model_type)
    assert again.keys() == hf_sd.keys()
    for name, t in hf_sd.items():
        assert again[name].dtype == t.dtype and torch.equal(again[name], t), name
    ours = TransformerLanguageModel(cfg)
    ours.reset_parameters(5)
    hf.float().load_state_dict(to_hf_state_dict(ours, cfg, model_type), strict=True)  # exactly our keys and shapes
    back = from_hf_state_dict(hf.state_dict(), cfg, model_type)
    assert back.keys() == ours.state_dict().keys()
    assert all(torch.equal(back[k], t) for k, t in ours.state_dict().items())


@pytest.mark.parametrize("case", list(CASES))
def test_configs_round_trip_through_config_json_for_transformers_4_and_5(case, tmp_path):
    cfg, model_type, _ = CASES[case]
    assert cfg_from_hf_config(hf_config_from_cfg(cfg, model_type)) == cfg
    hf_config_from_cfg(cfg, model_type).save_pretrained(tmp_path)
    saved = transformers.AutoConfig.from_pretrained(tmp_path)
    assert saved.model_type == model_type and cfg_from_hf_config(saved) == cfg
    c = json.loads((tmp_path / "config.json").read_text())
    assert c["rope_theta"] == cfg.rope_theta and "rope_parameters" in c and "rope_scaling" in c
    legacy = {k: v for k, v in c.items() if k != "rope_parameters"}  # what transformers 4 reads
    assert cfg_from_hf_config(legacy) == cfg
    assert transformers.AutoConfig.for_model(**legacy).rope_parameters == saved.rope_parameters


def hf_dict(case, **changes):
    return {**hf_config_from_cfg(*CASES[case][:2]).to_dict(), **changes}


REFUSED = {  # config.json values bigseq does not compute: (case, changes, field named)
    "yarn": ("llama3_untied", {"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0},
                               "rope_scaling": None}, "rope_type"),
    "llama3_without_factor": ("llama3_untied", {"rope_scaling": {"rope_type": "llama3", "low_freq_factor": 1.0,
                                                                 "high_freq_factor": 4.0}}, "rope_scaling.factor"),
    "partial_rotary": ("qwen3_qk_norm_head_dim", {"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
    "per_layer_type_rope": ("qwen2_qkv_bias", {"rope_scaling": None, "rope_parameters": {
        "full_attention": {"rope_type": "default"}, "sliding_attention": {"rope_type": "default"}}},
        "rope_parameters"),
    "gelu": ("mistral_window", {"hidden_act": "gelu"}, "hidden_act"),
    "chunked_layers": ("qwen2_window_on_last_layer", {"layer_types": ["full_attention", "chunked_attention"]},
                       "layer_types"),
    "sliding_layers_without_window": ("qwen2_qkv_bias", {"layer_types": ["full_attention", "sliding_attention"]},
                                      "layer_types"),
    "unknown_model_type": ("llama3_untied", {"model_type": "falcon"}, "model_type"),
    "phi3_llama3_rope": ("phi3_window", {"rope_scaling": None, "rope_parameters": {
        "rope_type": "llama3", "rope_theta": 1e4, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}},
        "rope_type"),
    "phi3_head_dim": ("phi3_window", {"head_dim": 32}, "head_dim"),
    "longrope_without_long_factor": ("phi3_longrope", {"rope_scaling": {"rope_type": "longrope", "short_factor": [
        1.0] * 8}}, "rope_scaling.long_factor"),
    "longrope_on_llama": ("llama3_untied", {"rope_scaling": {"rope_type": "longrope", "short_factor": [1.0] * 8,
                                                             "long_factor": [2.0] * 8}}, "rope_type"),
    # Gemma 2 / Gemma 3 / OLMo 2
    "gemma3_multimodal": ("gemma3_text_local_global", {"model_type": "gemma3"}, "Gemma3ForConditionalGeneration"),
    "gemma3_multimodal_architecture": ("gemma3_text_local_global",
                                       {"architectures": ["Gemma3ForConditionalGeneration"]}, "architectures"),
    "gemma_activation": ("gemma2_softcaps_alternating_window", {"hidden_activation": "relu"}, "hidden_activation"),
    "gemma_bidirectional": ("gemma3_text_local_global", {"use_bidirectional_attention": True},
                            "use_bidirectional_attention"),
    "gemma_sliding_without_window": ("gemma2_softcaps_alternating_window", {"sliding_window": None},
                                     "sliding_window"),
    "gemma_unknown_layer_type": ("gemma2_softcaps_alternating_window", {"layer_types": ["chunked_attention"] * 4},
                                 "layer_types"),
    "gemma3_yarn_full_rope": ("gemma3_text_local_global", {"rope_parameters": {
        "full_attention": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 2.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}, "rope_parameters.full_attention.rope_type"),
    "gemma3_scaled_local_rope": ("gemma3_text_local_global", {"rope_parameters": {
        "full_attention": {"rope_type": "default", "rope_theta": 1e6},
        "sliding_attention": {"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0}}},
        "rope_parameters.sliding_attention.rope_type"),
    "gemma3_one_rope_for_all_layers": ("gemma3_text_local_global", {"rope_parameters": {
        "rope_type": "default", "rope_theta": 1e4}}, "rope_parameters"),
    "olmo2_gelu": ("olmo2", {"hidden_act": "gelu"}, "hidden_act"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_unsupported_hf_config_values_are_one_line_naming_the_field(name):
    case, changes, field = REFUSED[name]
    with pytest.raises(BigseqError) as e:
        cfg_from_hf_config(hf_dict(case, **changes))
    assert field in str(e.value) and "\n" not in str(e.value)


def test_plain_llama_and_gpt2_configs_still_export_as_llama_and_gpt2():
    assert adapter_for_cfg(BASE).model_type == "llama"
    assert adapter_for_cfg(dataclasses.replace(BASE, bias=True, decoder_head_dim=32)).model_type == "llama"
    assert adapter_for_cfg(dataclasses.replace(gpt2_tiny(), vocab_size=VOCAB)).model_type == "gpt2"


@pytest.mark.parametrize("changes", [{"qk_norm": "full"}, {"sliding_window_layers": [0]},
                                     {"attention_out_bias": True, "mlp_bias": True}])
def test_configs_no_hf_model_type_computes_are_refused_on_export(changes):
    cfg = dataclasses.replace(CASES["qwen2_window_on_last_layer"][0], **changes)
    with pytest.raises(BigseqError, match="no HF equivalent") as e:
        hf_config_from_cfg(cfg)
    assert "\n" not in str(e.value)


def test_phi3_exports_only_what_llama_and_mistral_do_not_compute():
    assert adapter_for_cfg(CASES["phi3_window"][0]).model_type == "mistral"
    assert adapter_for_cfg(dataclasses.replace(CASES["phi3_window"][0], sliding_window=None)).model_type == "llama"
    for case in ("phi3_partial_tied", "phi3_longrope", "phi3_mini_longrope_partial"):
        assert adapter_for_cfg(CASES[case][0]).model_type == "phi3"
    with pytest.raises(BigseqError, match="HF phi3 does not compute") as e:  # phi3 has no llama3 RoPE
        hf_config_from_cfg(CASES["llama3_untied"][0], "phi3")
    assert "\n" not in str(e.value)


def test_longrope_below_the_pretraining_length_uses_the_short_factors():
    cfg = CASES["phi3_longrope"][0]
    hf = random_hf_model(cfg, "phi3")
    ours = converted(hf)
    short = torch.randint(0, VOCAB, (2, cfg.rope_original_max_positions), generator=torch.Generator().manual_seed(2))
    long = torch.randint(0, VOCAB, (2, T), generator=torch.Generator().manual_seed(3))
    sd = ours.state_dict()
    only_long = TransformerLanguageModel(dataclasses.replace(cfg, rope_short_factor=cfg.rope_long_factor)).eval()
    only_long.load_state_dict(sd)
    with torch.no_grad():
        torch.testing.assert_close(ours(short), hf(short).logits, rtol=TOL, atol=TOL)
        assert (only_long(short) - ours(short)).abs().max() > 100 * TOL  # 16 positions: the short factors
        assert torch.equal(only_long(long), ours(long))  # 24 positions: the long factors only


def test_longrope_attention_factor_from_factor_is_transformers_one():
    from transformers.modeling_rope_utils import _compute_longrope_parameters
    params = {**hf_dict("phi3_longrope")["rope_parameters"], "factor": 3.0}  # not max / original positions (4)
    c = hf_dict("phi3_longrope", rope_scaling=None, rope_parameters=params)
    cfg = cfg_from_hf_config(c)
    _, expected = _compute_longrope_parameters(transformers.Phi3Config(**c))
    _, without_factor = _compute_longrope_parameters(transformers.Phi3Config(**hf_dict("phi3_longrope")))
    assert cfg.rope_attention_factor == pytest.approx(expected, rel=1e-12) and 1 < expected < without_factor
    legacy = hf_dict("phi3_longrope", rope_parameters=None, rope_scaling={"type": "su", **{
        k: v for k, v in params.items() if k != "rope_type"}})
    assert cfg_from_hf_config(legacy) == cfg  # "su" is longrope, as Phi3Config maps it


# (case, the feature switched off): each Gemma/OLMo 2 feature alone moves the logits far past the tolerance
FEATURES = [
    ("gemma2_softcaps_alternating_window", {"attn_logit_softcap": None}),
    ("gemma2_softcaps_alternating_window", {"final_logit_softcap": None}),
    ("gemma2_softcaps_alternating_window", {"query_pre_attn_scalar": None}),
    ("gemma2_softcaps_alternating_window", {"sliding_window": None, "sliding_window_layers": None}),
    ("gemma2_softcaps_alternating_window", {"decoder_norm_placement": "pre"}),  # no post norms
    ("gemma2_softcaps_alternating_window", {"norm": "rmsnorm"}),  # w instead of 1 + w
    ("gemma2_softcaps_alternating_window", {"embed_scale_in_weight_dtype": False, "no_scale_embedding": True}),
    ("gemma3_text_local_global", {"qk_norm": "none"}),
    ("gemma3_text_local_global", {"sliding_window": None, "sliding_window_layers": None, "rope_local_theta": None}),
    ("gemma3_text_linear_rope_untied", {"rope_local_theta": None}),
    ("olmo2", {"decoder_norm_placement": "pre"}),  # the same weights on the sublayers' inputs
    ("olmo2", {"decoder_norm_placement": "post"}),
]


@pytest.mark.parametrize("case,off", FEATURES, ids=[f"{c}-{'-'.join(o)}" for c, o in FEATURES])
def test_each_gemma_and_olmo2_feature_matters(case, off):
    cfg = CASES[case][0]
    ours = converted(random_hf_model(cfg))
    without = TransformerLanguageModel(dataclasses.replace(cfg, **off)).eval()
    sd = ours.state_dict()
    # a norm that moved from a sublayer's output to its input keeps its weights
    without.load_state_dict({k: sd[k] if k in sd else sd[k.replace("_norm.", "_post_norm.")]
                             for k in without.state_dict()})
    tokens = torch.randint(0, VOCAB, (2, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (without(tokens) - ours(tokens)).abs().max() > 100 * TOL, f"{off} does not change the logits"


@pytest.mark.parametrize("changes", [{"attn_logit_softcap": 5.0}, {"final_logit_softcap": 5.0},
                                     {"query_pre_attn_scalar": 32}, {"rope_scaling": "linear"},
                                     {"no_scale_embedding": False, "embed_scale_in_weight_dtype": True},
                                     {"sliding_window": 8, "rope_local_theta": 1e4},
                                     {"decoder_normalize_before": False, "decoder_norm_placement": "sandwich"},
                                     {"decoder_normalize_before": False, "decoder_norm_placement": "output"},
                                     {"norm": "rmsnorm_fp32"}, {"norm": "rmsnorm_unit_offset"},
                                     {"activation_fn": "geglu_tanh"}])
def test_a_llama_config_with_one_gemma_or_olmo2_feature_has_no_hf_equivalent(changes):
    with pytest.raises(BigseqError, match="no HF equivalent"):
        hf_config_from_cfg(dataclasses.replace(BASE, **changes))


@pytest.mark.parametrize("case,changes", [
    ("gemma2_softcaps_alternating_window", {"qk_norm": "full"}),
    ("gemma2_softcaps_alternating_window", {"mlp_bias": True}),
    ("gemma2_softcaps_alternating_window", {"query_pre_attn_scalar": 32.5}),
    ("gemma3_text_local_global", {"rope_scaling": "llama3"}),
    ("gemma3_text_linear_rope_untied", {"rope_local_theta": None}),  # 4.x's keys cannot scale the local layers
    ("olmo2", {"sliding_window": 8}),
    ("olmo2", {"qk_norm": "head"}),
    ("gemma2_softcaps_alternating_window", {"rope_partial_factor": 0.5}),  # Phi-3's features on other types
    ("olmo2", {"rope_partial_factor": 0.5}),
])
def test_gemma_and_olmo2_configs_no_hf_model_type_computes_are_refused_on_export(case, changes):
    with pytest.raises(BigseqError, match="no HF equivalent") as e:
        hf_config_from_cfg(dataclasses.replace(CASES[case][0], **changes))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("case,pattern", [("gemma2_softcaps_alternating_window", {}),
                                          ("gemma3_text_local_global", {"sliding_window_pattern": 6}),
                                          ("gemma3_text_local_global", {})])
def test_gemma_files_of_transformers_4_without_layer_types_or_rope_parameters_import_the_same(case, pattern):
    """4.x wrote no layer_types (the pattern, or Gemma 2's alternation, says which layers slide) and Gemma 3's
    RoPE as rope_theta + rope_local_base_freq + rope_scaling."""
    old = {k: v for k, v in hf_dict(case, **pattern).items() if k not in ("layer_types", "rope_parameters")}
    assert cfg_from_hf_config(old) == CASES[case][0]


@pytest.mark.parametrize("case", list(CASES))
def test_sharded_folders_convert_both_ways_with_the_same_logits(case, tmp_path):
    """What users run: save_pretrained with small shards -> from-hf (streamed) -> logits; to-hf -> transformers
    loads the sharded export with the same logits; every tensor comes back bit for bit (in the source's
    model type)."""
    from bigseq.checkpoint.consolidated import build_consolidated_model
    from bigseq.checkpoint.convert import from_hf, to_hf
    from bigseq.checkpoint.hf_read import TensorReader
    cfg, model_type, _ = CASES[case]
    hf = random_hf_model(cfg, model_type)
    hf.save_pretrained(tmp_path / "hf", max_shard_size="20KB")
    assert len(list((tmp_path / "hf").glob("*.safetensors"))) > 2
    from_hf(str(tmp_path / "hf"), str(tmp_path / "ours"))
    ours = build_consolidated_model(str(tmp_path / "ours"))
    to_hf(str(tmp_path / "ours"), str(tmp_path / "back"), max_shard_size="20KB")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    tokens = torch.randint(0, VOCAB, (2, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(tokens).logits
        torch.testing.assert_close(ours(tokens), expected, rtol=TOL, atol=TOL)
        torch.testing.assert_close(back(tokens).logits, expected, rtol=TOL, atol=TOL)
    if case in EXPORTED_AS:  # another model type's layout: the logits say it all
        return
    with TensorReader(str(tmp_path / "hf")) as a, TensorReader(str(tmp_path / "back")) as b:
        assert set(a.names()) == set(b.names())
        assert all(torch.equal(a.get(n), b.get(n)) for n in a.names())
