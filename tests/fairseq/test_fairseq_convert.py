"""from-fairseq / to-fairseq against checkpoints and logits made by the real fairseq (tests/fixtures/fairseq)."""

import argparse
import json
import os

import pytest
import torch

from bigseq.checkpoint.consolidated import build_consolidated_model, load_consolidated
from bigseq.checkpoint.fairseq_pickle import load_fairseq_checkpoint
from bigseq.cli.convert import main as convert
from bigseq.errors import BigseqError
from tests.fairseq.conftest import LMS, TRANSLATION, bigseq_logits, data_bin, fixture

ALL = TRANSLATION + LMS


def from_fairseq(src: str, out: str, name: str, *extra: str) -> str:
    return convert(["from-fairseq", src, out, "--data", data_bin(name), *extra])


def plain(args) -> dict:
    """A model config as JSON keeps it (tuples as lists)."""
    return json.loads(json.dumps(args if isinstance(args, dict) else vars(args)))


def tie_groups(model: dict) -> set[frozenset]:
    groups: dict[int, set] = {}
    for k, v in model.items():
        groups.setdefault(v.untyped_storage().data_ptr(), set()).add(k)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


@pytest.mark.parametrize("name", ALL)
def test_converted_model_gives_fairseqs_logits(name, tmp_path):
    out = from_fairseq(fixture(f"{name}.pt"), str(tmp_path / "m"), name)
    ours, theirs = bigseq_logits(build_consolidated_model(out), name)
    diff = (ours - theirs).abs().max().item()
    assert diff < 1e-4, diff
    dicts = {"transformer_postnorm": ["dict.src.txt", "dict.tgt.txt"], "transformer_prenorm": ["dict.src.txt",
             "dict.tgt.txt"]}.get(name, ["dict.txt"])
    for d in dicts:  # the data-bin's dictionaries travel with the weights, byte for byte
        with open(os.path.join(out, d), "rb") as a, open(os.path.join(data_bin(name), d), "rb") as b:
            assert a.read() == b.read()


@pytest.mark.parametrize("name", ALL)
def test_round_trip_gives_fairseqs_tensors_keys_and_ties_back(name, tmp_path):
    original = load_fairseq_checkpoint(fixture(f"{name}.pt"))
    out = from_fairseq(fixture(f"{name}.pt"), str(tmp_path / "m"), name)
    back = load_fairseq_checkpoint(convert(["to-fairseq", out, str(tmp_path / "back.pt")]))
    # plus the sinusoidal `_float_tensor` buffers: fairseq <= 0.12.2 needs them under strict loading,
    # fairseq-fixed (which wrote the fixtures) drops them on load
    extra = set(back["model"]) - set(original["model"])
    assert set(original["model"]) <= set(back["model"]) and all(k.endswith("._float_tensor") for k in extra)
    for k, v in original["model"].items():
        assert back["model"][k].dtype == v.dtype and torch.equal(back["model"][k], v), k
    assert tie_groups(back["model"]) == tie_groups(original["model"])
    # the layout fairseq 0.12 writes: cfg dict, model config a Namespace (legacy --arch) or dict, args None
    assert back["args"] is None and type(back["cfg"]["model"]) is type(original["cfg"]["model"])
    assert set(back) <= set(original) and {"optimizer_history", "extra_state", "task_state"} <= set(back)
    theirs, ours = plain(original["cfg"]["model"]), plain(back["cfg"]["model"])  # the recorded args come back,
    # except values fairseq resolves the same way: None -> --tokens-per-sample, the final norm of a post-norm model
    resolved = {"max_target_positions", "no_decoder_final_norm"} if name == "transformer_lm_learned" else set()
    assert {k: v for k, v in ours.items() if k in theirs and k not in resolved} == {
        k: v for k, v in theirs.items() if k in ours and k not in resolved}
    assert back["cfg"]["task"] == original["cfg"]["task"]


def test_fp16_checkpoint_stays_fp16(tmp_path):
    state = load_fairseq_checkpoint(fixture("transformer_postnorm.pt"))
    halves = {}
    state["model"] = {k: halves.setdefault(v.untyped_storage().data_ptr(), v.half()) for k, v in state["model"].items()}
    state["cfg"]["common"]["fp16"] = True
    torch.save(state, tmp_path / "fp16.pt")
    out = from_fairseq(str(tmp_path / "fp16.pt"), str(tmp_path / "m"), "transformer_postnorm")
    info, _, tensors = load_consolidated(out)
    assert info["dtype"] == "float16" and all(t.dtype == torch.float16 for t in tensors.values())
    back = load_fairseq_checkpoint(convert(["to-fairseq", out, str(tmp_path / "back.pt")]))
    for k, v in state["model"].items():
        assert back["model"][k].dtype == torch.float16
        assert k.endswith("_float_tensor") or torch.equal(back["model"][k], v), k
    ours, theirs = bigseq_logits(build_consolidated_model(out), "transformer_postnorm")
    assert (ours - theirs).abs().max() < 5e-2  # fp16 weights, fp32 compute


def test_args_style_checkpoint_with_legacy_keys_converts_the_same(tmp_path):
    """A pre-0.10 layout: everything in one `args` Namespace, no cfg; keys as fairseq < 0.9 named them
    (layer_norms.N, no output_projection under tying, old sinusoidal buffers, no version)."""
    state = load_fairseq_checkpoint(fixture("transformer_postnorm.pt"))
    state["args"] = argparse.Namespace(**{**state["cfg"]["task"], **vars(state["cfg"]["model"])})
    state["cfg"] = None
    legacy = {}
    for k, v in state["model"].items():
        for new, old in (("self_attn_layer_norm", "layer_norms.0"), ("encoder_attn_layer_norm", "layer_norms.1"),
                         ("final_layer_norm", "layer_norms.1" if k.startswith("encoder") else "layer_norms.2")):
            k = k.replace(f".{new}.", f".{old}.")
        if k == "decoder.output_projection.weight" or k.endswith(".version"):
            continue
        legacy[k.replace("_float_tensor", "weights")] = v
    state["model"] = legacy
    torch.save(state, tmp_path / "old.pt")
    out = from_fairseq(str(tmp_path / "old.pt"), str(tmp_path / "m"), "transformer_postnorm")
    ours, theirs = bigseq_logits(build_consolidated_model(out), "transformer_postnorm")
    assert (ours - theirs).abs().max() < 1e-4


def _broken(tmp_path, name: str, edit) -> str:
    state = load_fairseq_checkpoint(fixture(f"{name}.pt"))
    edit(state)
    path = str(tmp_path / "bad.pt")
    torch.save(state, path)
    return path


class Harmless:
    pass


@pytest.mark.parametrize("case", ["adaptive_softmax", "arch", "pickle_global", "prenorm_without_final_norm",
                                  "wrong_dictionary", "missing_tensor"])
def test_bad_checkpoints_are_one_line_and_write_nothing(case, tmp_path):
    name, expected = {
        "adaptive_softmax": ("transformer_lm_gpt2_tiny", "--adaptive-softmax-cutoff 10,20 (adaptive softmax)"),
        "arch": ("transformer_postnorm", "fairseq arch 'lstm' is not supported"),
        "pickle_global": ("transformer_postnorm", f"pickle global {Harmless.__module__}.Harmless not allowed"),
        "prenorm_without_final_norm": ("transformer_prenorm", "pre-norm encoder saved by a fairseq version without"),
        "wrong_dictionary": ("transformer_postnorm", "has 12 tokens, the checkpoint's embedding"),
        "missing_tensor": ("transformer_prenorm", "missing ['decoder.layers.1.ffn.down_proj.bias']"),
    }[case]
    data = data_bin(name)

    def edit(state):
        model = state["cfg"]["model"]
        model = model if isinstance(model, dict) else vars(model)
        if case == "adaptive_softmax":
            model["adaptive_softmax_cutoff"] = "10,20"
        elif case == "arch":
            model["arch"] = "lstm"
        elif case == "pickle_global":
            state["extra_state"]["thing"] = Harmless()
        elif case == "prenorm_without_final_norm":
            state["model"]["encoder.version"] = torch.tensor([1.0])
        elif case == "missing_tensor":
            del state["model"]["decoder.layers.1.fc2.bias"]

    path = _broken(tmp_path, name, edit)
    if case == "wrong_dictionary":
        data = str(tmp_path / "data")
        os.makedirs(data)
        for lang in ("src", "tgt"):
            with open(os.path.join(data, f"dict.{lang}.txt"), "w") as f:
                f.write("".join(f"t{i} 1\n" for i in range(8)))
    out = tmp_path / "out"
    with pytest.raises(BigseqError) as e:
        convert(["from-fairseq", path, str(out), "--data", data])
    assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not out.exists() and [p for p in os.listdir(tmp_path) if p.startswith(".convert-")] == []


def test_converted_folder_records_fairseqs_config(tmp_path):
    out = from_fairseq(fixture("transformer_lm_learned.pt"), str(tmp_path / "m"), "transformer_lm_learned")
    info, cfg, _ = load_consolidated(out)
    assert (cfg.position_offset, cfg.position_kind, info["pad_idx"]) == (2, "learned", 1)
    with open(os.path.join(out, "fairseq.json")) as f:
        assert json.load(f)["model"]["_name"] == "transformer_lm"  # fairseq saved a dataclass config here
