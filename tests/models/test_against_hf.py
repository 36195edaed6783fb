"""bigseq transformer_lm == transformers GPT2LMHeadModel / LlamaForCausalLM on the same weights (litgpt style).

Tiny random HF models built from a config (no download), weights copied with
bigseq's own converter, logits compared in fp32, eval mode.
"""

import dataclasses

import pytest
import torch

from bigseq.errors import BigseqError
from bigseq.models.transformer_lm.architectures import gpt2_tiny, llama_tiny, transformer_lm
from bigseq.models.transformer_lm.hf import (
    cfg_from_hf_config,
    from_hf_state_dict,
    hf_config_from_cfg,
    to_hf_state_dict,
)
from bigseq.models.transformer_lm.model import TransformerLanguageModel

transformers = pytest.importorskip("transformers")
VOCAB = 101


def random_hf_model(cfg):
    """An HF model of cfg's shape with every tensor random (norms and biases included, so a swapped key shows)."""
    hf_config = hf_config_from_cfg(cfg)
    cls = transformers.GPT2LMHeadModel if hf_config.model_type == "gpt2" else transformers.LlamaForCausalLM
    torch.manual_seed(0)
    model = cls(hf_config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "ln" in name or "norm" in name else 0.0))
    return model


CASES = {
    "gpt2_tied": dataclasses.replace(gpt2_tiny(), vocab_size=VOCAB),
    "gpt2_untied": dataclasses.replace(gpt2_tiny(), vocab_size=VOCAB, share_decoder_input_output_embed=False),
    "llama_gqa_untied": dataclasses.replace(llama_tiny(), vocab_size=VOCAB, rope_theta=500.0),
    "llama_gqa_tied": dataclasses.replace(llama_tiny(), vocab_size=VOCAB, share_decoder_input_output_embed=True),
    "llama_mha_bias": dataclasses.replace(llama_tiny(), vocab_size=VOCAB, decoder_kv_heads=None, bias=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_hf(case):
    cfg = CASES[case]
    hf = random_hf_model(cfg)
    ours = TransformerLanguageModel(cfg_from_hf_config(hf.config)).eval()
    ours.load_state_dict(from_hf_state_dict(hf.state_dict(), ours.cfg))
    tokens = torch.randint(0, VOCAB, (2, 13))
    with torch.no_grad():
        expected = hf(tokens).logits
        got = ours(tokens)
    assert expected.abs().max() > 0.1  # the comparison is not between two near-zero tensors
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_ours_hf_ours_is_exact_and_configs_round_trip(case):
    cfg = CASES[case]
    ours = TransformerLanguageModel(cfg)
    ours.reset_parameters(5)
    hf_sd = to_hf_state_dict(ours, cfg)
    hf = random_hf_model(cfg)
    hf.load_state_dict(hf_sd, strict=True)  # HF accepts exactly these keys and shapes
    back = from_hf_state_dict(hf.state_dict(), cfg)
    sd = ours.state_dict()
    assert back.keys() == sd.keys()
    for name, t in sd.items():
        assert torch.equal(back[name], t), name
    assert cfg_from_hf_config(hf_config_from_cfg(cfg)) == cfg
    assert cfg_from_hf_config(hf.config.to_dict()).decoder_layers == cfg.decoder_layers


def test_configs_without_an_hf_equivalent_and_mismatched_checkpoints_are_clear_errors():
    with pytest.raises(BigseqError, match="no HF equivalent"):
        hf_config_from_cfg(dataclasses.replace(transformer_lm(), vocab_size=VOCAB))
    cfg = CASES["llama_gqa_untied"]
    hf_sd = random_hf_model(cfg).state_dict()
    with pytest.raises(BigseqError, match="does not use"):
        from_hf_state_dict(hf_sd, dataclasses.replace(cfg, decoder_layers=1))
    del hf_sd["lm_head.weight"]
    with pytest.raises(BigseqError, match="lm_head.weight"):
        from_hf_state_dict(hf_sd, cfg)
    with pytest.raises(BigseqError, match="rope_type"):
        cfg_from_hf_config({**random_hf_model(cfg).config.to_dict(),
                            "rope_parameters": {"rope_type": "dynamic", "rope_theta": 1e4, "factor": 8.0}})
