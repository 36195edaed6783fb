"""checkpoint/compat: which checkpoints a run may resume or fine-tune from. Architecture fields must match
(one line naming the field); runtime fields (dropouts, kernels, activation checkpointing) may differ."""

import dataclasses
import json
from types import SimpleNamespace

import pytest

from bigseq.checkpoint import compat
from bigseq.config import runtime, section
from bigseq.config.train_config import parse_train_config, train_config_to_dict
from bigseq.distributed.launch_env import DistEnv
from bigseq.errors import BigseqError

VOCAB = 300


def _cfg(*flags):
    return parse_train_config(["data-bin", "--batch-size", "2", "--arch", "llama_tiny", *flags])


def _meta(*flags, vocab_size=VOCAB) -> dict:
    """bigseq_meta.json of a checkpoint saved by a run with these flags (one rank, ZeRO 0)."""
    cfg = _cfg(*flags)
    return {"cfg": train_config_to_dict(cfg), "names": cfg.names, "vocab_size": vocab_size, "world_size": 1,
            "zero_stage": 0}


def _trainer(*flags):
    return SimpleNamespace(cfg=_cfg(*flags), task=SimpleNamespace(vocab_size=VOCAB), num_stages=1,
                           env=DistEnv(rank=0, world_size=1, local_rank=0),
                           engine=SimpleNamespace(zero_optimization_stage=lambda: 0))


def _check(saved_flags, now_flags, weights_only=False):
    compat.check_compatible(_meta(*saved_flags), _trainer(*now_flags), "save/checkpoint_4", weights_only=weights_only)


def test_an_architecture_change_is_refused_in_one_line_naming_the_field():
    with pytest.raises(BigseqError) as err:
        _check([], ["--decoder-layers", "3"])
    message = str(err.value)
    assert "\n" not in message and "checkpoint save/checkpoint_4 is of another architecture" in message
    assert "decoder_layers: saved 2 vs now 3" in message


def test_weights_only_refuses_another_architecture_too():
    with pytest.raises(BigseqError, match="decoder_embed_dim: saved 64 vs now 32"):
        _check([], ["--decoder-embed-dim", "32"], weights_only=True)


RUNTIME_CHANGES = {"dropout": ["--dropout", "0.3"], "attention_impl": ["--attention-impl", "triton"],
                   "activation_checkpointing": ["--activation-checkpointing"],
                   "checkpoint_activations": ["--checkpoint-activations", "--checkpoint-interval", "2"]}


@pytest.mark.parametrize("weights_only", [False, True], ids=["resume", "finetune"])
@pytest.mark.parametrize("change", sorted(RUNTIME_CHANGES))
def test_runtime_fields_may_differ_both_ways(change, weights_only):
    _check([], RUNTIME_CHANGES[change], weights_only)  # switched on now
    _check(RUNTIME_CHANGES[change], [], weights_only)  # switched off now


def test_the_activation_checkpointing_switch_sets_only_runtime_fields():
    on, off = _cfg("--activation-checkpointing"), _cfg()
    assert on.model.checkpoint_activations and not off.model.checkpoint_activations
    assert compat.architecture_diffs(type(off.model), train_config_to_dict(on)["model"], off.model) == []


def test_another_vocabulary_is_refused():
    with pytest.raises(BigseqError, match=f"has a vocabulary of 280 but the data has {VOCAB}"):
        compat.check_compatible(_meta(vocab_size=280), _trainer(), "save/checkpoint_4")


def test_another_model_family_is_refused():
    meta = _meta()
    meta["names"] = {**meta["names"], "model": "transformer", "arch": "transformer_wmt_en_de"}
    with pytest.raises(BigseqError, match=r"another architecture \(--arch transformer_wmt_en_de\)"):
        compat.check_compatible(meta, _trainer(), "save/checkpoint_4")


# an encoder-decoder style config: one level of sections, compared by flat (flag) name
@dataclasses.dataclass(kw_only=True)
class Side:
    layers: int = 2
    dims: tuple[int, ...] = (8, 8)
    dropout: float = runtime(0.1)


@dataclasses.dataclass(kw_only=True)
class EncDec:
    encoder: Side = section(Side, "encoder_")
    decoder: Side = section(Side, "decoder_")
    share_embeddings: bool = False
    attention_impl: str = runtime("torch")


def _saved(cfg: EncDec) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))  # as bigseq_meta.json holds it: tuples are lists


def test_sections_are_compared_by_flat_name():
    now = EncDec(decoder=Side(layers=3))
    assert compat.architecture_diffs(EncDec, _saved(EncDec()), now) == [("decoder_layers", 2, 3)]


def test_section_runtime_fields_and_json_lists_are_no_difference():
    saved = _saved(EncDec(encoder=Side(dropout=0.0), attention_impl="cuda"))
    assert compat.architecture_diffs(EncDec, saved, EncDec(encoder=Side(dims=(8, 8), dropout=0.4))) == []


def test_fields_a_saved_config_does_not_have_are_not_compared():
    saved = _saved(EncDec())
    del saved["decoder"]["layers"], saved["share_embeddings"]
    assert compat.architecture_diffs(EncDec, saved, EncDec(decoder=Side(layers=6), share_embeddings=True)) == []


def test_a_nested_difference_is_one_line_naming_the_flag(monkeypatch):
    monkeypatch.setattr(compat, "get_family", lambda name: SimpleNamespace(config_cls=EncDec))
    trainer = _trainer()
    names = {"model": "encdec", "arch": "encdec_tiny"}
    trainer.cfg = SimpleNamespace(names=names, model=EncDec(encoder=Side(layers=4)))
    meta = {"cfg": {"model": _saved(EncDec())}, "names": names, "vocab_size": VOCAB}
    with pytest.raises(BigseqError, match="encoder_layers: saved 2 vs now 4") as err:
        compat.check_compatible(meta, trainer, "save/checkpoint_4", weights_only=True)
    assert "\n" not in str(err.value)


def test_a_precision_change_is_refused_in_one_line_unless_weights_only_or_universal():
    with pytest.raises(BigseqError) as err:
        _check(["--precision", "fp32"], ["--precision", "bf16"])
    message = str(err.value)
    assert "\n" not in message and "saved with --precision fp32, this run uses --precision bf16" in message
    assert "--finetune-from-model save/checkpoint_4" in message
    _check(["--precision", "fp32"], ["--precision", "bf16"], weights_only=True)
    meta = {**_meta("--precision", "fp32"), "universal": True, "zero_stage": 2}  # fp32 states, any precision
    trainer = _trainer("--precision", "bf16")
    trainer.engine = SimpleNamespace(zero_optimization_stage=lambda: 2)
    compat.check_compatible(meta, trainer, "save/checkpoint_4")
