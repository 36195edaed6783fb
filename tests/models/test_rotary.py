"""RoPE from a config: cos/sin computed once per forward, bit-identical to the per-layer computation."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from bigseq.models.transformer_lm import architectures as archs
from bigseq.models.transformer_lm.model import TransformerLanguageModel
from bigseq.modules.attention import SelfAttention
from bigseq.modules.rotary import RopeConfig, RotaryEmbedding, apply_rope

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
