"""Cross-attention, the encoder layer and the decoder layer with cross-attention."""

import pytest
import torch

from bigseq.modules.attention import padding_mask_from_lengths
from bigseq.modules.cross_attention import CrossAttention
from bigseq.modules.kv_cache import KVCache, StaticKVCache
from bigseq.modules.rotary import RopeConfig
from bigseq.modules.transformer_layer import TransformerDecoderLayer, TransformerEncoderLayer

# a decoder layer's parameters: init by name, the HF key maps and saved checkpoints key on them
DECODER_PARAMS = ["attn_norm.weight", "attn_norm.bias", "attn.q_proj.weight", "attn.q_proj.bias",
                  "attn.k_proj.weight", "attn.k_proj.bias", "attn.v_proj.weight", "attn.v_proj.bias",
                  "attn.out_proj.weight", "attn.out_proj.bias", "ffn_norm.weight", "ffn_norm.bias",
                  "ffn.up_proj.weight", "ffn.up_proj.bias", "ffn.down_proj.weight", "ffn.down_proj.bias"]
CROSS_PARAMS = ["cross_attn_norm.weight", "cross_attn_norm.bias", "cross_attn.q_proj.weight",
                "cross_attn.q_proj.bias", "cross_attn.k_proj.weight", "cross_attn.k_proj.bias",
                "cross_attn.v_proj.weight", "cross_attn.v_proj.bias", "cross_attn.out_proj.weight",
                "cross_attn.out_proj.bias"]
LAYER = dict(dim=32, num_heads=4, ffn_dim=64)


def test_cross_attention_equals_a_hand_computation_and_skips_padded_source_positions():
    attn = CrossAttention(16, 2, encoder_dim=24).eval()
    x, enc = torch.randn(2, 3, 16), torch.randn(2, 5, 24)
    lengths = torch.tensor([5, 2])
    with torch.no_grad():
        out = attn(x, enc, encoder_lengths=lengths)
        q = attn.q_proj(x).view(2, 3, 2, 8)
        k, v = attn.k_proj(enc).view(2, 5, 2, 8), attn.v_proj(enc).view(2, 5, 2, 8)
        scores = torch.einsum("bthd,bshd->bhts", q, k) / 8 ** 0.5
        scores = scores.masked_fill(~(torch.arange(5) < lengths[:, None])[:, None, None, :], float("-inf"))
        expected = attn.out_proj(torch.einsum("bhts,bshd->bthd", scores.softmax(-1), v).reshape(2, 3, 16))
        torch.testing.assert_close(out, expected)
        changed = enc.clone()
        changed[1, 2:] = torch.randn(3, 24)
        mask = padding_mask_from_lengths(lengths, 5)
        assert torch.equal(attn(x, changed, key_padding_mask=mask), out)
    with pytest.raises(ValueError, match="not both"):
        attn(x, enc, key_padding_mask=mask, encoder_lengths=lengths)


def test_cross_attention_projects_the_encoder_once_into_its_static_cache():
    attn = CrossAttention(16, 2).eval()
    x, enc = torch.randn(2, 4, 16), torch.randn(2, 5, 16)
    mask = padding_mask_from_lengths(torch.tensor([5, 3]), 5)
    cache = StaticKVCache()
    with torch.no_grad():
        full = attn(x, enc, key_padding_mask=mask)
        first = attn(x[:, :1], enc, key_padding_mask=mask, cache=cache)
        later = [attn(x[:, t:t + 1], cache=cache) for t in range(1, 4)]  # no encoder output needed any more
    assert cache.filled and cache.key_padding_mask_BS is mask
    torch.testing.assert_close(torch.cat([first, *later], 1), full)


def test_encoder_layer_is_bidirectional_and_ignores_padded_keys():
    for normalize_before in (True, False):
        layer = TransformerEncoderLayer(**LAYER, normalize_before=normalize_before).eval()
        x = torch.randn(2, 6, 32)
        pad = padding_mask_from_lengths(torch.tensor([6, 4]), 6)
        later_changed, padding_changed = x.clone(), x.clone()
        later_changed[:, 5] = torch.randn(2, 32)  # (a constant shift would vanish in the norm)
        padding_changed[1, 4:] = torch.randn(2, 32)
        with torch.no_grad():
            out = layer(x, padding_mask=pad)
            assert not torch.allclose(layer(later_changed, padding_mask=pad)[0, 0], out[0, 0])
            assert torch.equal(layer(padding_changed, padding_mask=pad)[1, :4], out[1, :4])
            torch.testing.assert_close(layer(x[1:, :4])[0], out[1, :4])
    assert [n for n, _ in layer.named_parameters()] == DECODER_PARAMS


def test_decoder_layer_without_cross_attention_has_exactly_its_parameters():
    plain = TransformerDecoderLayer(**LAYER)
    assert [n for n, _ in plain.named_parameters()] == DECODER_PARAMS
    assert plain.cross_attn is None and plain.cross_attn_norm is None
    with pytest.raises(ValueError, match="without cross_attention"):
        plain(torch.randn(1, 2, 32), encoder_out=torch.randn(1, 3, 32))
    crossing = TransformerDecoderLayer(**LAYER, cross_attention=True, encoder_dim=48)
    assert sorted(n for n, _ in crossing.named_parameters()) == sorted(DECODER_PARAMS + CROSS_PARAMS)
    assert crossing.cross_attn.k_proj.weight.shape == (32, 48)


@pytest.mark.parametrize("normalize_before", [True, False])
def test_decoder_layer_with_cross_attention_is_causal_and_reads_the_source(normalize_before):
    layer = TransformerDecoderLayer(**LAYER, cross_attention=True, normalize_before=normalize_before).eval()
    x, enc = torch.randn(2, 5, 32), torch.randn(2, 4, 32)
    pad = padding_mask_from_lengths(torch.tensor([4, 2]), 4)
    later_changed, source_changed = x.clone(), enc.clone()
    later_changed[:, 3] = torch.randn(2, 32)
    source_changed[:, 0] = torch.randn(2, 32)
    with torch.no_grad():
        out = layer(x, encoder_out=enc, encoder_padding_mask=pad)
        assert torch.equal(layer(later_changed, encoder_out=enc, encoder_padding_mask=pad)[:, :3], out[:, :3])
        assert not torch.allclose(layer(x, encoder_out=source_changed, encoder_padding_mask=pad), out)


@pytest.mark.parametrize("rope", [None, RopeConfig(theta=100.0)])
def test_incremental_decoding_with_cross_attention_equals_the_full_forward(rope):
    layers = [TransformerDecoderLayer(**LAYER, num_kv_heads=2, rope=rope, cross_attention=True).eval()
              for _ in range(2)]
    x, enc = torch.randn(3, 7, 32), torch.randn(3, 5, 32)
    pad = padding_mask_from_lengths(torch.tensor([5, 1, 3]), 5)

    def run(x_BTD, start_pos=0, cache=None, source=enc):
        for i, layer in enumerate(layers):
            x_BTD = layer(x_BTD, start_pos=start_pos, kv_cache=cache.layer(i) if cache else None,
                          encoder_out=source, encoder_padding_mask=pad if source is not None else None)
        return x_BTD

    cache = KVCache(2, 3, 8, 2, 8)
    with torch.no_grad():
        full = run(x)
        steps = [run(x[:, :3], cache=cache)]
        steps += [run(x[:, t:t + 1], t, cache, source=None) for t in range(3, 7)]  # the cache keeps the source
    torch.testing.assert_close(torch.cat(steps, 1), full)


def test_beams_share_their_sentence_encoder_keys_in_cross_attention_and_its_cache():
    """Rows 2s, 2s+1 over encoder row s give what each row gives over its own copy of the encoder output,
    also step by step from a cache holding the keys once per sentence, and after a sentence is dropped."""
    attn = CrossAttention(16, 2).eval()
    x, enc = torch.randn(6, 3, 16), torch.randn(3, 5, 16)
    mask = padding_mask_from_lengths(torch.tensor([5, 2, 4]), 5)
    rows = torch.arange(3).repeat_interleave(2)
    cache = KVCache(1, 6, 3, 2, 8)
    with torch.no_grad():
        repeated = attn(x, enc[rows], key_padding_mask=mask[rows])
        torch.testing.assert_close(attn(x, enc, key_padding_mask=mask), repeated)
        steps = [attn(x[:, :1], enc, key_padding_mask=mask, cache=cache.layer(0).cross_attn)]
        assert cache.layer(0).cross_attn.keys_BSHD.shape[0] == 3  # once per sentence, not per beam
        steps.append(attn(x[:, 1:2], cache=cache.layer(0).cross_attn))
        torch.testing.assert_close(torch.cat(steps, 1), repeated[:, :2])
        # sentence 1 leaves; the beams of sentence 2 swap places
        kept = torch.tensor([1, 0, 5, 4])
        cache.reorder(kept)
        torch.testing.assert_close(attn(x[kept, 2:], cache=cache.layer(0).cross_attn), repeated[kept, 2:])
        with pytest.raises(ValueError, match="must divide the query rows"):
            attn(x[:5], enc, key_padding_mask=mask)
        with pytest.raises(ValueError, match="keep or drop whole groups"):
            cache.reorder(torch.tensor([1, 0, 3]))
