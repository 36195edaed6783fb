"""The later families' transformer_lm features, module by module: llama3 RoPE == transformers bit for bit,
q/k norm order, head size, bias switches, per-layer windows (plain and pipeline), FLOPs, flags, checks; and
Gemma's and OLMo 2's: norm kinds == transformers bit for bit in bf16 (where they differ), zero-initialized
unit-offset norms, norm placements, the rounded embedding scale, GeGLU-tanh, per-layer RoPE theta and
soft-capped logits in the plain model and its pipeline form, the fused loss refusing soft-capped logits."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from bigseq.config import FlagParser, add_dataclass_args
from bigseq.errors import BigseqError
from bigseq.models.transformer_lm.architectures import gpt2_tiny, llama_tiny
from bigseq.models.transformer_lm.config import TransformerLMConfig
from bigseq.models.transformer_lm.family import attention_flops_per_token
from bigseq.models.transformer_lm.model import TransformerLanguageModel
from bigseq.models.transformer_lm.pipeline import pipeline_layers
from bigseq.modules.attention import SelfAttention
from bigseq.modules.feedforward import GatedFeedForward
from bigseq.modules.init import construct_without_default_init, init_params_by_name
from bigseq.modules.norms import UnitOffsetRMSNorm, build_norm
from bigseq.modules.rotary import RopeConfig, RotaryEmbedding, apply_rope
from bigseq.modules.transformer_layer import TransformerDecoderLayer

VOCAB = 53


@pytest.mark.parametrize("head_dim,theta,original", [(64, 5e5, 8192), (16, 1e4, 8), (128, 5e5, 32)])
def test_llama3_cos_sin_equal_transformers_bit_for_bit(head_dim, theta, original):
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
    scaling = dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0)
    hf_config = transformers.LlamaConfig(hidden_size=head_dim * 2, num_attention_heads=2, rope_parameters={
        "rope_type": "llama3", "rope_theta": theta, "original_max_position_embeddings": original, **scaling})
    positions = torch.arange(0, 20000, 7)
    cos, sin = LlamaRotaryEmbedding(hf_config)(torch.zeros(1, dtype=torch.float32), positions[None])
    ours = RotaryEmbedding(head_dim, RopeConfig(theta=theta, scaling="llama3", original_max_positions=original,
                                                **scaling)).cos_sin(len(positions), positions=positions)
    assert torch.equal(ours.cos, cos[0]) and torch.equal(ours.sin, sin[0])
    plain = RotaryEmbedding(head_dim, RopeConfig(theta=theta)).cos_sin(len(positions), positions=positions)
    assert not torch.equal(plain.cos, ours.cos)


@pytest.mark.parametrize("qk_norm", ["head", "full"])
def test_qk_norm_normalizes_before_rope_over_a_head_or_all_heads(qk_norm):
    torch.manual_seed(0)
    attn = SelfAttention(32, 4, num_kv_heads=2, head_dim=12, rope=RopeConfig(), qk_norm=qk_norm).eval()
    assert attn.q_norm.weight.shape == ((12,) if qk_norm == "head" else (48,))
    assert attn.k_norm.weight.shape == ((12,) if qk_norm == "head" else (24,))
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn_like(p))
        x = torch.randn(2, 7, 32)
        q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
        q, k, v = (t.view(2, 7, -1, 12) for t in (q if qk_norm == "head" else attn.q_norm(q),
                                                    k if qk_norm == "head" else attn.k_norm(k), v))
        if qk_norm == "head":
            q, k = attn.q_norm(q), attn.k_norm(k)
        cos, sin = RotaryEmbedding(12, RopeConfig()).cos_sin(7)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             is_causal=True, enable_gqa=True).transpose(1, 2)
        torch.testing.assert_close(attn(x), attn.out_proj(out.reshape(2, 7, 48)))


def test_head_size_and_bias_switches_shape_the_projections():
    cfg = TransformerLMConfig(decoder_embed_dim=60, decoder_attention_heads=4, decoder_head_dim=16, bias=True,
                              attention_qkv_bias=False, mlp_bias=False, decoder_layers=1, vocab_size=VOCAB)
    layer = TransformerLanguageModel(cfg).layers[0]
    assert layer.attn.q_proj.weight.shape == (64, 60) and layer.attn.out_proj.weight.shape == (60, 64)
    assert layer.attn.q_proj.bias is None and layer.attn.v_proj.bias is None
    assert layer.attn.out_proj.bias is not None and layer.attn_norm.bias is not None  # norms follow --bias
    assert layer.ffn.up_proj.bias is None and layer.ffn.down_proj.bias is None
    default = TransformerLanguageModel(dataclasses.replace(gpt2_tiny(), vocab_size=VOCAB))
    attn = default.layers[0].attn  # every switch follows --bias by default
    assert attn.q_proj.bias is not None and attn.out_proj.bias is not None and not hasattr(attn, "q_norm")
    assert default.layers[0].ffn.up_proj.bias is not None


def test_windows_reach_the_layers_they_name_in_the_plain_model_and_the_pipeline():
    cfg = dataclasses.replace(llama_tiny(), decoder_layers=4, vocab_size=VOCAB, sliding_window=8,
                              sliding_window_layers=[1, 3])
    assert [layer.attn.window for layer in TransformerLanguageModel(cfg).layers] == [None, 8, None, 8]
    built = [spec.build() for spec in pipeline_layers(cfg)[1:5]]
    assert [layer.attn.window for layer in built] == [None, 8, None, 8]
    assert [layer.last for layer in built] == [False, False, False, True]
    every = dataclasses.replace(cfg, sliding_window_layers=None)
    assert [layer.attn.window for layer in TransformerLanguageModel(every).layers] == [8] * 4


def test_attention_flops_count_the_width_of_all_heads_and_the_window():
    cfg = dataclasses.replace(llama_tiny(), decoder_layers=4, decoder_head_dim=32)  # 4 heads of 32
    assert attention_flops_per_token(cfg, 100) == 12.0 * 4 * 128 * 100
    windowed = dataclasses.replace(cfg, sliding_window=10, sliding_window_layers=[0, 2])
    assert attention_flops_per_token(windowed, 100) == 12.0 * 128 * (100 + 10 + 100 + 10)


def test_flags_set_the_new_fields():
    p = FlagParser(prog="t")
    add_dataclass_args(p, TransformerLMConfig, "model")
    args = vars(p.parse_args(["--decoder-head-dim", "24", "--attention-qkv-bias", "--no-mlp-bias", "--qk-norm",
                              "head", "--rope-scaling", "llama3", "--rope-original-max-positions", "8",
                              "--sliding-window", "8", "--sliding-window-layers", "1", "2"]))
    assert args == {"decoder_head_dim": 24, "attention_qkv_bias": True, "mlp_bias": False, "qk_norm": "head",
                    "rope_scaling": "llama3", "rope_original_max_positions": 8, "sliding_window": 8,
                    "sliding_window_layers": [1, 2]}


@pytest.mark.parametrize("changes,flag", [
    ({"sliding_window_layers": [1]}, "--sliding-window-layers"),
    ({"sliding_window": 8, "sliding_window_layers": [2, 1]}, "--sliding-window-layers"),
    ({"sliding_window": 8, "sliding_window_layers": [0, 2]}, "--sliding-window-layers"),
    ({"sliding_window": 0}, "--sliding-window"),
    ({"decoder_head_dim": 0}, "--decoder-head-dim"),
    ({"positions": "learned", "rope_scaling": "llama3"}, "--rope-scaling"),
    ({"rope_scaling": "llama3", "rope_low_freq_factor": 4.0}, "--rope-low-freq-factor"),
    ({"sliding_window": 8, "attention_impl": "triton"}, "--sliding-window"),
    ({"decoder_norm_placement": "sandwich"}, "--decoder-norm-placement"),  # llama_tiny normalizes before
    ({"attn_logit_softcap": 0.0}, "--attn-logit-softcap"),
    ({"final_logit_softcap": -1.0}, "--final-logit-softcap"),
    ({"query_pre_attn_scalar": 0}, "--query-pre-attn-scalar"),
    ({"attn_logit_softcap": 5.0, "attention_impl": "cuda"}, "--attn-logit-softcap"),
    ({"embed_scale_in_weight_dtype": True}, "--embed-scale-in-weight-dtype"),  # llama_tiny does not scale
    ({"rope_local_theta": 1e4}, "--rope-local-theta"),  # no sliding window
    ({"rope_scaling": "linear", "rope_scaling_factor": 0.0}, "--rope-scaling-factor"),
])
def test_bad_values_are_one_line_naming_the_flag(changes, flag):
    with pytest.raises(BigseqError) as e:
        dataclasses.replace(llama_tiny(), **changes)
    assert flag in str(e.value) and "\n" not in str(e.value)


GEMMA3_LIKE = dict(decoder_normalize_before=False, decoder_norm_placement="sandwich", norm="rmsnorm_unit_offset",
                   activation_fn="geglu_tanh", no_scale_embedding=False, embed_scale_in_weight_dtype=True,
                   qk_norm="head", rope_theta=1e6, rope_local_theta=1e4, sliding_window=4, sliding_window_layers=[0, 1],
                   attn_logit_softcap=2.0, final_logit_softcap=1.5, query_pre_attn_scalar=12, vocab_size=VOCAB)


@pytest.mark.parametrize("kind,hf_class", [("rmsnorm", "llama.modeling_llama.LlamaRMSNorm"),
                                           ("rmsnorm_fp32", "olmo2.modeling_olmo2.Olmo2RMSNorm"),
                                           ("rmsnorm_unit_offset", "gemma2.modeling_gemma2.Gemma2RMSNorm")])
def test_norm_kinds_equal_transformers_bit_for_bit_in_bf16(kind, hf_class):
    pytest.importorskip("transformers")
    import importlib
    module, name = hf_class.rsplit(".", 1)
    theirs = getattr(importlib.import_module(f"transformers.models.{module}"), name)(48, eps=1e-6).to(torch.bfloat16)
    ours = build_norm(kind, 48, 1e-6).to(torch.bfloat16)
    torch.manual_seed(0)
    x = torch.randn(4, 9, 48, dtype=torch.bfloat16) * 3
    with torch.no_grad():
        ours.weight.copy_(torch.randn(48) * 0.5 + 1.0)
        theirs.weight.copy_(ours.weight)
        out = ours(x)
        assert out.dtype == torch.bfloat16 and torch.equal(out, theirs(x))
        others = [build_norm(k, 48, 1e-6).to(torch.bfloat16) for k in ("rmsnorm", "rmsnorm_fp32", "rmsnorm_unit_offset")
                  if k != kind]
        for other in others:  # where the weight multiplies changes the bf16 result
            other.weight.copy_(ours.weight)
            assert not torch.equal(other(x), out)


def test_unit_offset_norms_start_as_the_identity_scale_q_k_norms_included():
    cfg = dataclasses.replace(llama_tiny(), **GEMMA3_LIKE)
    model = TransformerLanguageModel(cfg)
    model.reset_parameters(3)
    norms = {n: p for n, p in model.named_parameters() if n.endswith("norm.weight")}
    assert {"layers.0.attn.q_norm.weight", "layers.0.attn_post_norm.weight", "final_norm.weight"} <= set(norms)
    assert all(torch.equal(p, torch.zeros_like(p)) for p in norms.values())
    assert isinstance(model.layers[1].attn.k_norm, UnitOffsetRMSNorm)
    x = torch.randn(3, 64)
    torch.testing.assert_close(model.final_norm(x), x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg.norm_eps))


@pytest.mark.parametrize("placement", ["pre", "post", "sandwich", "output"])
def test_norm_placements_compute_their_formula_with_their_own_norms(placement):
    torch.manual_seed(1)
    layer = TransformerDecoderLayer(dim=16, num_heads=2, ffn_dim=24, activation_fn="swiglu", norm="rmsnorm",
                                    rope=RopeConfig(), norm_placement=placement).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p))
    names = {n.split(".")[0] for n, _ in layer.named_parameters() if "norm" in n.split(".")[0]}
    assert names == {"pre": {"attn_norm", "ffn_norm"}, "post": {"attn_norm", "ffn_norm"},
                     "sandwich": {"attn_norm", "attn_post_norm", "ffn_norm", "ffn_post_norm"},
                     "output": {"attn_post_norm", "ffn_post_norm"}}[placement]
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        a, f, n = layer.attn, layer.ffn, layer
        if placement == "pre":
            h = x + a(n.attn_norm(x))
            expected = h + f(n.ffn_norm(h))
        elif placement == "post":
            h = n.attn_norm(x + a(x))
            expected = n.ffn_norm(h + f(h))
        elif placement == "sandwich":
            h = x + n.attn_post_norm(a(n.attn_norm(x)))
            expected = h + n.ffn_post_norm(f(n.ffn_norm(h)))
        else:
            h = x + n.attn_post_norm(a(x))
            expected = h + n.ffn_post_norm(f(h))
        torch.testing.assert_close(layer(x), expected)


def test_the_gemma_embedding_scale_is_rounded_to_the_weight_dtype():
    transformers = pytest.importorskip("transformers")  # noqa: F841
    from transformers.models.gemma2.modeling_gemma2 import Gemma2TextScaledWordEmbedding
    cfg = dataclasses.replace(llama_tiny(), decoder_embed_dim=24, decoder_layers=1, vocab_size=VOCAB,
                              no_scale_embedding=False, embed_scale_in_weight_dtype=True)
    ours = TransformerLanguageModel(cfg).embed.to(torch.bfloat16)
    theirs = Gemma2TextScaledWordEmbedding(VOCAB, 24, 0, embed_scale=24 ** 0.5).to(torch.bfloat16)
    with torch.no_grad():
        theirs.weight.copy_(ours.tokens.weight)
    tokens = torch.arange(VOCAB)[None]
    assert torch.equal(ours(tokens), theirs(tokens))  # sqrt(24) is 4.90625 in bf16, not 4.899
    exact = TransformerLanguageModel(dataclasses.replace(cfg, embed_scale_in_weight_dtype=False)).embed
    exact.to(torch.bfloat16).load_state_dict(ours.state_dict())
    assert not torch.equal(exact(tokens), ours(tokens))


def test_geglu_tanh_gates_with_the_tanh_gelu():
    transformers = pytest.importorskip("transformers")
    ffn = GatedFeedForward(8, 12, "geglu_tanh")
    x = torch.randn(3, 8) * 3
    act = transformers.activations.ACT2FN["gelu_pytorch_tanh"]
    with torch.no_grad():
        assert torch.equal(ffn(x), ffn.down_proj(act(ffn.gate_proj(x)) * ffn.up_proj(x)))
        exact = GatedFeedForward(8, 12, "geglu")
        exact.load_state_dict(ffn.state_dict())
        assert not torch.equal(exact(x), ffn(x))


@pytest.mark.parametrize("tied", [True, False])
def test_local_theta_and_softcaps_reach_each_layer_in_the_plain_model_and_the_pipeline(tied):
    cfg = dataclasses.replace(llama_tiny(), **GEMMA3_LIKE, decoder_layers=3, share_decoder_input_output_embed=tied)
    model = TransformerLanguageModel.build(cfg, SimpleNamespace(vocab_size=VOCAB, pad_idx=1), seed=5).eval()
    assert [rope.theta for rope in model.layer_ropes] == [1e4, 1e4, 1e6]
    assert [layer.attn.softcap for layer in model.layers] == [2.0] * 3
    assert model.layers[0].attn.softmax_scale == 12 ** -0.5
    tokens = torch.randint(0, VOCAB, (2, 7))
    x, tied_modules = tokens, {}
    with torch.no_grad():
        for layer in pipeline_layers(cfg):
            module = tied_modules.get(layer.tie_key)
            if module is None:
                module = construct_without_default_init(layer.build)
                init_params_by_name(module, 5, layer.init_rules, prefix=layer.prefix)
                module.eval()
                if layer.tie_key:
                    tied_modules[layer.tie_key] = module
            if isinstance(module, TransformerDecoderLayer):
                assert module.attn.rotary.cfg.theta == (1e4 if module.attn.window else 1e6)
            x = layer.tied_forward(module, x) if layer.tied_forward else module(x)
        expected = model(tokens)
        assert torch.equal(x, expected)
        assert expected.abs().max() <= 1.5  # the final soft-cap
        global_theta = TransformerLanguageModel(dataclasses.replace(cfg, rope_local_theta=None)).eval()
        global_theta.load_state_dict(model.state_dict())
        assert not torch.allclose(global_theta(tokens), expected)


def test_the_fused_loss_refuses_soft_capped_logits():
    from bigseq.criterions.cross_entropy import CrossEntropyCriterion
    model = TransformerLanguageModel(dataclasses.replace(llama_tiny(), vocab_size=VOCAB, final_logit_softcap=30.0))
    with pytest.raises(BigseqError, match="--fused-linear-ce") as e:
        CrossEntropyCriterion._hidden_and_output_weight(model, sample=None)
    assert "--final-logit-softcap" in str(e.value) and "\n" not in str(e.value)


def test_flags_set_the_gemma_and_olmo2_fields():
    p = FlagParser(prog="t")
    add_dataclass_args(p, TransformerLMConfig, "model")
    args = vars(p.parse_args(["--norm", "rmsnorm_unit_offset", "--decoder-norm-placement", "sandwich",
                              "--attn-logit-softcap", "50", "--final-logit-softcap", "30",
                              "--query-pre-attn-scalar", "256", "--embed-scale-in-weight-dtype",
                              "--activation-fn", "geglu_tanh", "--rope-local-theta", "10000",
                              "--rope-scaling", "linear"]))
    assert args == {"norm": "rmsnorm_unit_offset", "decoder_norm_placement": "sandwich", "attn_logit_softcap": 50.0,
                    "final_logit_softcap": 30.0, "query_pre_attn_scalar": 256.0, "embed_scale_in_weight_dtype": True,
                    "activation_fn": "geglu_tanh", "rope_local_theta": 10000.0, "rope_scaling": "linear"}
