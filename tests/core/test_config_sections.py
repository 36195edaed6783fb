"""One level of nested config sections: cfg.encoder.embed_dim <-> --encoder-embed-dim; runtime fields."""

import dataclasses
import json
from dataclasses import dataclass

import pytest

from bigseq.config import FlagParser, add_dataclass_args, architecture_values, build_config, runtime, runtime_fields
from bigseq.config.fields import flat_fields, section
from bigseq.errors import BigseqError


@dataclass(kw_only=True)
class StackConfig:
    embed_dim: int = 8
    """Width of this stack."""
    layers: int = 2
    """Layers of this stack."""
    normalize_before: bool = False
    """Pre-norm layers."""
    layerdrop: float = runtime(0.0)
    """Drop whole layers while training."""


@dataclass(kw_only=True)
class EncDecConfig:
    encoder: StackConfig = section(StackConfig, "encoder_")
    decoder: StackConfig = section(StackConfig, "decoder_")
    share_all_embeddings: bool = False
    """Tie encoder, decoder and output embeddings."""
    dropout: float = runtime(0.1)
    """Dropout."""


def parse(argv):
    parser = FlagParser(prog="t")
    add_dataclass_args(parser, EncDecConfig, "model")
    return parser, vars(parser.parse_args(argv))


def test_nested_fields_become_fairseq_flat_flags(capsys):
    parser, args = parse(["--encoder-embed-dim", "16", "--decoder-layers", "3", "--encoder-normalize-before",
                          "--share-all-embeddings"])
    assert args == {"encoder_embed_dim": 16, "decoder_layers": 3, "encoder_normalize_before": True,
                    "share_all_embeddings": True}
    cfg = build_config(EncDecConfig, None, args)
    assert cfg.encoder == StackConfig(embed_dim=16, normalize_before=True) and cfg.decoder.layers == 3
    assert cfg.decoder.embed_dim == 8 and cfg.share_all_embeddings
    parser.print_help()
    out = capsys.readouterr().out
    assert "--encoder-embed-dim" in out and "Width of this stack." in out and "--decoder-layerdrop" in out


def test_a_named_architecture_is_the_base_and_flags_override_one_field():
    base = EncDecConfig(encoder=StackConfig(embed_dim=32, layers=6), decoder=StackConfig(embed_dim=32))
    cfg = build_config(EncDecConfig, base, {"decoder_layers": 4})
    assert cfg.encoder == StackConfig(embed_dim=32, layers=6) and cfg.decoder == StackConfig(embed_dim=32, layers=4)
    assert base.decoder.layers == 2  # the base is not mutated


def test_a_saved_config_rebuilds_from_its_nested_dict():
    cfg = build_config(EncDecConfig, None, {"encoder_layers": 5, "dropout": 0.3})
    saved = json.loads(json.dumps(dataclasses.asdict(cfg)))
    assert saved["encoder"]["layers"] == 5
    assert build_config(EncDecConfig, None, saved) == cfg


def test_values_are_type_checked_by_flat_name():
    with pytest.raises(BigseqError, match="config key 'encoder_layers' must be int"):
        build_config(EncDecConfig, None, {"encoder_layers": "six"})


def test_flat_names_runtime_fields_and_architecture_values():
    assert flat_fields(EncDecConfig)["decoder_embed_dim"] == ("decoder", "embed_dim")
    assert runtime_fields(EncDecConfig) == {"dropout", "encoder_layerdrop", "decoder_layerdrop"}
    arch = architecture_values(EncDecConfig())
    assert arch == {"encoder_embed_dim": 8, "encoder_layers": 2, "encoder_normalize_before": False,
                    "decoder_embed_dim": 8, "decoder_layers": 2, "decoder_normalize_before": False,
                    "share_all_embeddings": False}


def test_transformer_lm_runtime_fields_are_what_may_change_on_resume():
    import bigseq.models  # noqa: F401  (registers the families)
    from bigseq.models.family import get_family
    assert get_family("transformer_lm").runtime_fields == {
        "dropout", "attention_dropout", "activation_dropout", "attention_impl", "checkpoint_activations",
        "checkpoint_interval", "mlp_chunks"}
