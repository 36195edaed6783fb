"""The fairseq checkpoint reader: weights_only loading with an allow-list, omegaconf stand-ins, args/cfg access."""

import argparse
import os

import numpy as np
import pytest
import torch

from bigseq.checkpoint.fairseq_pickle import ModelArgs, load_fairseq_checkpoint, model_args
from bigseq.errors import BigseqError

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "fairseq")


class Harmless:
    """Stands for any class a checkpoint may name that is not on the allow-list."""

    def __init__(self):
        self.x = 1


def test_an_omegaconf_pickle_reads_as_plain_dicts_and_lists():
    """omegaconf_cfg.pt was written by omegaconf 2.3.0 (make_omegaconf_fixture.py): DictConfig, ListConfig,
    AnyNode, metadata, typing.Any, plus a Namespace and numpy values."""
    state = load_fairseq_checkpoint(os.path.join(FIXTURES, "omegaconf_cfg.pt"))
    assert state["cfg"]["optimization"] == {"lr": [0.25], "max_update": 3, "update_freq": [1]}
    assert type(state["cfg"]) is dict and type(state["cfg"]["optimization"]["lr"]) is list
    assert state["cfg"]["model"]["adaptive_softmax_cutoff"] is None
    assert state["legacy_model_ns"] == argparse.Namespace(arch="transformer_lm_gpt2_tiny", decoder_layers=2,
                                                          dropout=0.1)
    assert state["extra_state"]["val_loss"] == 1.5 and np.array_equal(state["extra_state"]["best"], [2.0, 3.0])
    assert torch.equal(state["model"]["w"], torch.arange(6.0).reshape(2, 3))
    args = model_args(state, "omegaconf_cfg.pt")
    assert (args.arch, args.get("decoder_layers"), args.get("activation_fn")) == ("transformer_lm", 2, "gelu")


def test_a_global_off_the_allow_list_is_refused_in_one_line_naming_it(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"model": {}, "cfg": {"model": Harmless()}}, path)
    with pytest.raises(BigseqError) as e:
        load_fairseq_checkpoint(str(path))
    message = str(e.value)
    assert f"pickle global {Harmless.__module__}.Harmless not allowed" in message
    assert "\n" not in message


def test_numpy_scalars_and_arrays_of_numpy_1_and_2_module_names_load(tmp_path):
    path = tmp_path / "np.pt"
    state = {"model": {}, "extra_state": {"a": np.float32(2.5), "b": np.arange(3), "c": np.dtype("int16")}}
    torch.save(state, path, _use_new_zipfile_serialization=False)  # a plain pickle stream: names can be edited
    legacy = tmp_path / "np1.pt"  # numpy 1 pickled the same rebuilders under numpy.core
    data = path.read_bytes()
    assert b"numpy._core.multiarray" in data
    legacy.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    for p in (path, legacy):
        extra = load_fairseq_checkpoint(str(p))["extra_state"]
        assert extra["a"] == np.float32(2.5) and np.array_equal(extra["b"], np.arange(3))


def test_args_and_cfg_style_model_configs_read_the_same():
    ns = argparse.Namespace(arch="transformer", encoder_layers=3, dropout=0.2)
    as_args = model_args({"args": ns, "cfg": None, "model": {}}, "x.pt")
    as_cfg_ns = model_args({"args": None, "cfg": {"model": ns}, "model": {}}, "x.pt")
    as_cfg_dict = model_args({"args": None, "cfg": {"model": {"_name": "transformer", **vars(ns)}}}, "x.pt")
    for args in (as_args, as_cfg_ns, as_cfg_dict):
        assert (args.arch, args.get("encoder_layers"), args.get("missing", 7)) == ("transformer", 3, 7)
    nested = ModelArgs({"_name": "transformer", "encoder": {"embed_dim": 32}, "decoder": {"layers": 1}})
    assert (nested.get("encoder_embed_dim"), nested.get("decoder_layers")) == (32, 1)
    with pytest.raises(BigseqError, match="records no model config"):
        model_args({"args": None, "cfg": {"task": {}}, "model": {}}, "x.pt")


def test_not_a_checkpoint_is_one_line(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a zip nor a pickle")
    with pytest.raises(BigseqError, match="not a readable torch checkpoint"):
        load_fairseq_checkpoint(str(tmp_path / "junk.pt"))
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(BigseqError, match="no 'model' state dict"):
        load_fairseq_checkpoint(str(tmp_path / "other.pt"))
    with pytest.raises(BigseqError, match="no such fairseq checkpoint"):
        load_fairseq_checkpoint(str(tmp_path / "absent.pt"))
