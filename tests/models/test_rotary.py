"""RoPE from a config: cos/sin computed once per forward, bit-identical to the per-layer computation; partial
rotary and longrope bit-identical to transformers' Phi-3 rotary embedding."""

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from bigseq.errors import BigseqError
from bigseq.models.transformer_lm import architectures as archs
from bigseq.models.transformer_lm.model import TransformerLanguageModel
from bigseq.models.transformer_lm.parts import rope_config
from bigseq.modules.attention import SelfAttention
from bigseq.modules.rotary import RopeConfig, RotaryEmbedding, apply_rope, longrope_attention_factor

VOCAB = 97


def per_layer_cos_sin(start_pos, seq_len, head_dim, theta):
    """The formula every attention layer evaluated for itself before cos/sin moved to the model."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    positions = torch.arange(start_pos, start_pos + seq_len).float()
    freqs_TF = torch.outer(positions, inv_freq)
    emb_TD = torch.cat((freqs_TF, freqs_TF), dim=-1)
    return emb_TD.cos(), emb_TD.sin()


@pytest.mark.parametrize("head_dim,theta,start_pos,seq_len", [(16, 1e4, 0, 37), (64, 5e5, 4093, 9), (8, 10.0, 1, 1)])
def test_cos_sin_equal_the_per_layer_formula_bit_for_bit(head_dim, theta, start_pos, seq_len):
    rotary = RotaryEmbedding(head_dim, RopeConfig(theta=theta))
    expected = per_layer_cos_sin(start_pos, seq_len, head_dim, theta)
    got = rotary.cos_sin(seq_len, start_pos=start_pos)
    assert torch.equal(got.cos, expected[0]) and torch.equal(got.sin, expected[1])
    positions_BT = torch.arange(start_pos, start_pos + seq_len).expand(3, seq_len)
    per_token = rotary.cos_sin(seq_len, positions=positions_BT)
    assert per_token.cos.shape == (3, seq_len, head_dim)
    assert torch.equal(per_token.cos, expected[0].expand(3, -1, -1))
    assert torch.equal(per_token.sin, expected[1].expand(3, -1, -1))


def test_per_token_cos_sin_rotate_each_row_at_its_own_positions():
    rotary = RotaryEmbedding(8, RopeConfig())
    x = torch.randn(2, 4, 3, 8)
    positions = torch.tensor([[0, 1, 2, 3], [5, 6, 0, 1]])
    rotated = apply_rope(x, *rotary.cos_sin(4, positions=positions))
    torch.testing.assert_close(rotated[1, :2], apply_rope(x[1:, :2], *rotary.cos_sin(2, start_pos=5))[0])
    torch.testing.assert_close(rotated[1, 2:], apply_rope(x[1:, 2:], *rotary.cos_sin(2, start_pos=0))[0])


def test_config_refuses_scalings_it_does_not_have():
    assert RopeConfig().scaling == "none"
    with pytest.raises(ValueError, match="RoPE scaling 'yarn' is not supported"):
        RopeConfig(scaling="yarn")
    with pytest.raises(ValueError, match="theta"):
        RopeConfig(theta=0.0)
    with pytest.raises(ValueError, match="even head dimension"):
        RotaryEmbedding(7, RopeConfig())


def test_attention_needs_no_buffers_and_builds_on_meta():
    with torch.device("meta"):
        attn = SelfAttention(32, 4, rope=RopeConfig(theta=500.0))
    assert list(attn.buffers()) == [] and all(p.is_meta for p in attn.parameters())


def test_model_computes_cos_sin_once_and_matches_layers_computing_their_own(monkeypatch):
    cfg = dataclasses.replace(archs.llama_tiny(), rope_theta=500.0, decoder_kv_heads=2)
    model = TransformerLanguageModel.build(cfg, SimpleNamespace(vocab_size=VOCAB, pad_idx=1)).eval()
    assert list(model.buffers()) == []
    tokens = torch.randint(0, VOCAB, (2, 9))
    calls = []
    real = RotaryEmbedding.cos_sin
    monkeypatch.setattr(RotaryEmbedding, "cos_sin", lambda self, *a, **kw: calls.append(1) or real(self, *a, **kw))
    with torch.no_grad():
        once = model(tokens, start_pos=3)
        assert len(calls) == 1
        # each layer alone (as in a pipeline stage) computes cos/sin from start_pos itself
        x = model.embed(tokens, 3)
        for layer in model.layers:
            x = layer(x, start_pos=3)
        per_layer = model.output_layer(model.final_norm(x))
    assert len(calls) == 1 + cfg.decoder_layers
    assert torch.equal(once, per_layer)


def hf_phi3_rope(head_dim, **rope):
    """transformers' Phi3RotaryEmbedding of one head size (4 heads) and its apply_rotary_pos_emb."""
    modeling = pytest.importorskip("transformers.models.phi3.modeling_phi3")
    from transformers import Phi3Config
    config = Phi3Config(hidden_size=4 * head_dim, num_attention_heads=4, max_position_embeddings=64,
                        original_max_position_embeddings=16, rope_parameters={"rope_theta": 500.0, **rope})
    return modeling.Phi3RotaryEmbedding(config), modeling.apply_rotary_pos_emb


def test_partial_rotary_rotates_the_first_dims_as_transformers_and_passes_the_rest():
    rotary = RotaryEmbedding(16, RopeConfig(theta=500.0, partial_factor=0.75))
    assert rotary.rotary_dim == 12
    hf_rotary, hf_apply = hf_phi3_rope(16, rope_type="default", partial_rotary_factor=0.75)
    x_BTHD = torch.randn(2, 9, 3, 16)
    cos, sin = rotary.cos_sin(9, start_pos=4)
    assert cos.shape == (9, 12)
    hf_cos, hf_sin = hf_rotary(x_BTHD, torch.arange(4, 13)[None])
    assert torch.equal(cos, hf_cos[0]) and torch.equal(sin, hf_sin[0])
    got = apply_rope(x_BTHD, cos, sin)
    expected, _ = hf_apply(x_BTHD, x_BTHD, hf_cos, hf_sin, unsqueeze_dim=2)
    assert torch.equal(got, expected)
    assert torch.equal(got[..., 12:], x_BTHD[..., 12:])
    assert torch.equal(got[..., :12], apply_rope(x_BTHD[..., :12], cos, sin))


LONGROPE = dict(scaling="longrope", original_max_positions=16, short_factor=(1.0, 1.5, 2.0, 2.5),
                long_factor=(3.0, 5.0, 7.0, 9.0), attention_factor=longrope_attention_factor(64, 16),
                partial_factor=0.5)


@pytest.mark.parametrize("start_pos,seq_len", [(0, 16), (0, 17), (15, 1), (16, 1), (10, 30)])
def test_longrope_picks_short_or_long_factors_per_call_as_transformers(start_pos, seq_len):
    rotary = RotaryEmbedding(16, RopeConfig(theta=500.0, **LONGROPE))
    hf_rotary, _ = hf_phi3_rope(16, rope_type="longrope", short_factor=[1.0, 1.5, 2.0, 2.5],
                                long_factor=[3.0, 5.0, 7.0, 9.0], partial_rotary_factor=0.5)
    assert hf_rotary.attention_scaling == LONGROPE["attention_factor"] > 1
    positions = torch.arange(start_pos, start_pos + seq_len)
    hf_cos, hf_sin = hf_rotary(torch.zeros(1), positions[None])
    for got in (rotary.cos_sin(seq_len, start_pos=start_pos), rotary.cos_sin(seq_len, positions=positions[None])):
        assert torch.equal(got.cos.reshape(hf_cos.shape), hf_cos)
        assert torch.equal(got.sin.reshape(hf_sin.shape), hf_sin)
    in_use = "long_factor" if start_pos + seq_len > 16 else "short_factor"
    other = RotaryEmbedding(16, dataclasses.replace(rotary.cfg, **{in_use: (1.0,) * 4}))
    assert not torch.equal(other.cos_sin(seq_len, start_pos=start_pos).cos, hf_cos[0])  # the set in use is the one


def test_longrope_per_token_positions_pick_by_their_largest():
    rotary = RotaryEmbedding(16, RopeConfig(**LONGROPE))
    positions = torch.tensor([[0, 1, 2], [14, 15, 16]])  # row 2 reaches position 16: every row uses the long set
    per_token = rotary.cos_sin(3, positions=positions)
    long_only = RotaryEmbedding(16, dataclasses.replace(rotary.cfg, short_factor=LONGROPE["long_factor"]))
    assert torch.equal(per_token.cos[0], long_only.cos_sin(3, start_pos=0).cos)
    assert not torch.equal(per_token.cos[0], rotary.cos_sin(3, start_pos=0).cos)  # alone, row 1 is short


def test_longrope_attention_factor_default_is_transformers_formula():
    assert longrope_attention_factor(4096, 4096) == 1.0 and longrope_attention_factor(2048, 4096) == 1.0
    assert longrope_attention_factor(131072, 4096) == pytest.approx(math.sqrt(1 + math.log(32) / math.log(4096)))


def test_rope_configs_refuse_what_they_cannot_rotate():
    with pytest.raises(ValueError, match="partial_factor"):
        RopeConfig(partial_factor=0.0)
    with pytest.raises(ValueError, match="even number"):
        RotaryEmbedding(10, RopeConfig(partial_factor=0.3))  # int(10 * 0.3) = 3 dims: odd
    with pytest.raises(ValueError, match="longrope needs 4"):
        RotaryEmbedding(16, RopeConfig(**{**LONGROPE, "short_factor": (1.0,) * 3, "long_factor": (1.0,) * 3}))
    with pytest.raises(ValueError, match="one length"):
        RopeConfig(**{**LONGROPE, "long_factor": (1.0,)})


@pytest.mark.parametrize("changes,flag", [
    ({"rope_partial_factor": 1.5}, "--rope-partial-factor"),
    ({"rope_partial_factor": 0.1}, "--rope-partial-factor"),
    ({"rope_scaling": "longrope", "rope_short_factor": [1.0] * 8}, "--rope-long-factor"),
    ({"rope_scaling": "longrope", "rope_short_factor": [1.0] * 7, "rope_long_factor": [1.0] * 8},
     "--rope-short-factor"),
    ({"rope_scaling": "longrope", "rope_short_factor": [1.0] * 8, "rope_long_factor": [1.0] * 8,
      "rope_attention_factor": 0.0}, "--rope-attention-factor"),
])
def test_config_checks_name_the_flag(changes, flag):
    with pytest.raises(BigseqError, match=flag) as e:
        dataclasses.replace(archs.llama_tiny(), **changes)  # head 16: 8 frequencies
    assert "\n" not in str(e.value)


def test_default_rope_fields_keep_the_old_config():
    rope = rope_config(archs.llama_tiny())
    assert rope == RopeConfig(theta=rope.theta) and RotaryEmbedding(16, rope).rotary_dim == 16
