"""Flags from dataclasses: docs as --help, types, precedence, errors with suggestions."""

from dataclasses import dataclass
from typing import Literal

import pytest

from bigseq.config import FlagParser, add_dataclass_args, build_config, check_yaml_keys, field_docs, load_yaml
from bigseq.errors import BigseqError


@dataclass(kw_only=True)
class ToyConfig:
    decoder_layers: int = 2
    """Number of decoder layers."""
    dropout: float = 0.1
    """Dropout probability."""
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    """Normalization layer."""
    share_decoder_input_output_embed: bool = False
    """Tie input and output embeddings."""
    kv_heads: int | None = None
    """Key/value heads (None: as many as query heads)."""
    adam_betas: list[float] = None
    """Adam betas."""


def parse(argv):
    p = FlagParser(prog="t")
    add_dataclass_args(p, ToyConfig, "toy")
    return p, vars(p.parse_args(argv))


def test_field_docs_read_from_source():
    assert field_docs(ToyConfig)["decoder_layers"] == "Number of decoder layers."
    assert "Tie input" in field_docs(ToyConfig)["share_decoder_input_output_embed"]


def test_help_shows_field_docs(capsys):
    p, _ = parse([])
    p.print_help()
    out = capsys.readouterr().out
    assert "--decoder-layers" in out and "Number of decoder layers." in out
    assert "--share-decoder-input-output-embed" in out and "{layernorm,rmsnorm}" in out


def test_only_given_flags_land_and_types_convert():
    _, args = parse(["--decoder-layers", "4", "--share-decoder-input-output-embed", "--kv-heads", "2",
                     "--adam-betas", "0.9", "0.98"])
    assert args == {"decoder_layers": 4, "share_decoder_input_output_embed": True, "kv_heads": 2,
                    "adam_betas": [0.9, 0.98]}
    cfg = build_config(ToyConfig, ToyConfig(dropout=0.3), args)
    assert cfg.decoder_layers == 4 and cfg.dropout == 0.3 and cfg.norm == "layernorm"


def test_precedence_default_yaml_flag(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("decoder-layers: 6\ndropout: 0.2\n")
    values = load_yaml(str(y))
    _, flags = parse(["--dropout", "0.0"])
    cfg = build_config(ToyConfig, None, {**values, **flags})
    assert (cfg.decoder_layers, cfg.dropout) == (6, 0.0)


def test_unknown_yaml_key_suggests(tmp_path):
    with pytest.raises(BigseqError, match="unknown key 'decoder_layer'.*did you mean 'decoder_layers'"):
        check_yaml_keys({"decoder_layer": 3}, {"decoder_layers", "dropout"}, "c.yaml")


def test_yaml_type_errors_are_clear():
    with pytest.raises(BigseqError, match="'decoder_layers' must be int"):
        build_config(ToyConfig, None, {"decoder_layers": "many"})
    with pytest.raises(BigseqError, match="must be one of"):
        build_config(ToyConfig, None, {"norm": "batchnorm"})


def test_misspelled_flag_suggests_closest(capsys):
    p, _ = parse([])
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--decoder-layer", "3"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown flag --decoder-layer" in err and "did you mean '--decoder-layers'" in err


def test_bad_yaml_file(tmp_path):
    with pytest.raises(BigseqError, match="file not found"):
        load_yaml(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(BigseqError, match="mapping"):
        load_yaml(str(bad))


def test_bool_flag_negation():
    _, args = parse(["--no-share-decoder-input-output-embed"])
    assert args == {"share_decoder_input_output_embed": False}
