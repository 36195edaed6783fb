"""The later families' transformer_lm features, module by module: llama3 RoPE == transformers bit for bit,
q/k norm order, head size, bias switches, per-layer windows (plain and pipeline), FLOPs, flags, checks."""

import dataclasses

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
from bigseq.modules.rotary import RopeConfig, RotaryEmbedding, apply_rope

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
])
def test_bad_values_are_one_line_naming_the_flag(changes, flag):
    with pytest.raises(BigseqError) as e:
        dataclasses.replace(llama_tiny(), **changes)
    assert flag in str(e.value) and "\n" not in str(e.value)
