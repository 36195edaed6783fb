"""ModelFamily: what the trainer, DeepSpeed config, memory estimate and converters read about a family."""

import dataclasses

import pytest
import torch.nn as nn

import bigseq.models  # noqa: F401  (registers the families)
from bigseq.config.train_config import parse_train_config
from bigseq.distributed.engine import build_ds_config
from bigseq.errors import BigseqError
from bigseq.models.family import ModelFamily, get_family, hf_family, register_family
from bigseq.models.transformer_lm.architectures import llama_tiny
from bigseq.registry import MODEL_REGISTRY


def test_transformer_lm_flops_are_6n_plus_causal_attention():
    family, cfg = get_family("transformer_lm"), llama_tiny()
    want = 6.0 * 1000 + 12.0 * cfg.decoder_layers * cfg.decoder_embed_dim * 128
    assert family.flops_per_token(cfg, 1000, 128) == want


def test_transformer_lm_dims_name_its_sizes():
    cfg = dataclasses.replace(llama_tiny(), vocab_size=300)
    d = get_family("transformer_lm").dims(cfg)
    assert (d.layers, d.dim, d.ffn_dim, d.heads, d.kv_heads, d.vocab_size, d.gated_ffn) == (
        cfg.decoder_layers, cfg.decoder_embed_dim, cfg.decoder_ffn_embed_dim, cfg.decoder_attention_heads,
        cfg.kv_heads, 300, True)


def test_hf_types_map_to_their_family_and_others_are_one_line():
    assert hf_family("llama").name == hf_family("gpt2").name == "transformer_lm"
    with pytest.raises(BigseqError, match="HF model_type 'bert' is not supported; bigseq converts .*gpt2, llama"):
        hf_family("bert")


@dataclasses.dataclass(kw_only=True)
class _WideConfig:
    width: int = 64
    """Hidden size."""


class _Wide(nn.Module):
    def __init__(self, cfg, task=None):
        super().__init__()
        self.proj = nn.Linear(cfg.width, cfg.width)


def test_a_second_family_sizes_zero3_buckets_without_transformer_lm_names():
    from bigseq.models.family import ModelDims
    family = register_family(ModelFamily(
        name="test_wide", model_cls=_Wide, config_cls=_WideConfig, build=lambda cfg, task, seed: _Wide(cfg),
        dims=lambda cfg: ModelDims(layers=1, dim=cfg.width * 16, ffn_dim=cfg.width * 64, heads=1, kv_heads=1,
                                   vocab_size=0, gated_ffn=False)))
    assert "test_wide" in MODEL_REGISTRY and get_family("test_wide") is family
    cfg = parse_train_config(["data-bin", "--batch-size", "8", "--zero-stage", "3"])
    cfg = dataclasses.replace(cfg, names={**cfg.names, "model": "test_wide"}, model=_WideConfig(width=128))
    zero = build_ds_config(cfg, 1)["zero_optimization"]
    d = 128 * 16
    assert zero["reduce_bucket_size"] == d * d and zero["stage3_param_persistence_threshold"] == 10 * d


def test_a_plugin_model_gets_a_plain_family():
    @dataclasses.dataclass(kw_only=True)
    class _PlainConfig:
        width: int = 4
        """Width."""

    class _Plain(nn.Module):
        def __init__(self, cfg, task):
            super().__init__()
            self.proj, self.seeds = nn.Linear(cfg.width, cfg.width), []

        def reset_parameters(self, seed):
            self.seeds.append(seed)

    MODEL_REGISTRY.register("test_plain_family", _PlainConfig)(_Plain)
    family = get_family("test_plain_family")
    assert family.pipeline_layers is None and family.hf_adapter is None and family.dims is None
    assert family.build(_PlainConfig(), None, 7).seeds == [7]
    assert family.flops_per_token(_PlainConfig(), 10, 512) == 60.0
    with pytest.raises(BigseqError, match="pipeline parallelism is not supported for the test_plain_family family"):
        family.check_pipeline("x")
