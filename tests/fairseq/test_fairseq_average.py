"""bigseq average-checkpoints over fairseq .pt files: fairseq's selection regexes, float64 sums, ties, refusals."""

import argparse
import os
from collections import OrderedDict

import pytest
import torch

from bigseq.checkpoint.average_fairseq import last_n_checkpoints
from bigseq.checkpoint.fairseq_pickle import load_fairseq_checkpoint
from bigseq.cli.average_checkpoints import main as average_main
from bigseq.errors import BigseqError


def fairseq_checkpoint(seed: int, dtype=torch.float32) -> dict:
    """The layout fairseq-train writes, with a --share-all-embeddings model: three keys, one tensor."""
    g = torch.Generator().manual_seed(seed)
    embed = torch.randn(12, 4, generator=g).to(dtype)
    model = OrderedDict([("encoder.embed_tokens.weight", embed), ("encoder.version", torch.tensor([3.0])),
                         ("encoder.layers.0.fc1.weight", torch.randn(8, 4, generator=g).to(dtype)),
                         ("decoder.embed_tokens.weight", embed), ("decoder.output_projection.weight", embed),
                         ("decoder.version", torch.tensor([3.0])), ("decoder.step", torch.tensor([seed]))])
    return {"args": None, "cfg": {"model": argparse.Namespace(arch="transformer", share_all_embeddings=True)},
            "model": model, "optimizer_history": [{"num_updates": seed}], "extra_state": {"epoch": seed}}


def save(tmp_path, name: str, state: dict) -> str:
    path = os.path.join(tmp_path, name)
    torch.save(state, path)
    return path


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_copies_of_one_checkpoint_average_to_it_bit_for_bit(tmp_path, dtype):
    state = fairseq_checkpoint(1, dtype)
    paths = [save(tmp_path, f"checkpoint{i}.pt", state) for i in (1, 2, 3)]
    out = average_main(["--inputs", *paths, "--output", str(tmp_path / "avg.pt")])
    averaged = load_fairseq_checkpoint(out)
    for k, v in state["model"].items():
        assert averaged["model"][k].dtype == v.dtype and torch.equal(averaged["model"][k], v), k


def test_tied_embeddings_are_averaged_once_and_other_fields_come_from_the_first(tmp_path):
    a, b = fairseq_checkpoint(1), fairseq_checkpoint(4)
    pa, pb = save(tmp_path, "a.pt", a), save(tmp_path, "b.pt", b)
    out = average_main(["--inputs", pa, pb, "--output", str(tmp_path / "avg.pt")])
    avg = load_fairseq_checkpoint(out)
    key = "encoder.embed_tokens.weight"
    expected = (a["model"][key].double() + b["model"][key].double()) / 2
    for k in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight"):
        assert torch.equal(avg["model"][k], expected.float()), k  # an in-place sum would give 2x or 3x here
    tied = {avg["model"][k].untyped_storage().data_ptr() for k in ("encoder.embed_tokens.weight",
                                                                   "decoder.output_projection.weight")}
    assert len(tied) == 1  # still one tensor, as fairseq saved it
    assert torch.equal(avg["model"]["decoder.step"], torch.tensor([2]))  # integers floor-divide: (1 + 4) // 2
    assert avg["optimizer_history"] == a["optimizer_history"] and avg["extra_state"] == {"epoch": 1}


def test_fairseq_selection_regexes_pick_the_last_n(tmp_path):
    names = ("checkpoint1.pt", "checkpoint2.pt", "checkpoint10.pt", "checkpoint_2_100.pt", "checkpoint_3_150.pt",
             "checkpoint_best.pt", "checkpoint_last.pt", "checkpoint_5_300.pt")
    states = {name: fairseq_checkpoint(seed) for seed, name in enumerate(names, start=1)}  # each its own weights
    for name, state in states.items():
        save(tmp_path, name, state)
    assert [os.path.basename(p) for p in last_n_checkpoints(str(tmp_path), 2, by_update=False, upper_bound=None)] == [
        "checkpoint10.pt", "checkpoint2.pt"]
    assert [os.path.basename(p) for p in last_n_checkpoints(str(tmp_path), 2, by_update=True, upper_bound=200)] == [
        "checkpoint_3_150.pt", "checkpoint_2_100.pt"]
    out = average_main(["--inputs", str(tmp_path), "--num-epoch-checkpoints", "3", "--output",
                        str(tmp_path / "out" / "avg.pt")])
    key = "encoder.layers.0.fc1.weight"  # the mean of exactly the three epoch checkpoints
    want = sum(states[n]["model"][key].double() for n in ("checkpoint1.pt", "checkpoint2.pt", "checkpoint10.pt")) / 3
    assert torch.equal(load_fairseq_checkpoint(out)["model"][key], want.float())
    with pytest.raises(BigseqError, match="--num-update-checkpoints 4: .* holds 3 file"):
        average_main(["--inputs", str(tmp_path), "--num-update-checkpoints", "4", "--output", str(tmp_path / "x.pt")])


def test_mismatched_keys_or_shapes_are_refused_and_nothing_is_written(tmp_path):
    a = fairseq_checkpoint(1)
    b = fairseq_checkpoint(2)
    del b["model"]["encoder.layers.0.fc1.weight"]
    c = fairseq_checkpoint(3)
    c["model"]["encoder.layers.0.fc1.weight"] = torch.zeros(9, 4)
    pa, pb, pc = (save(tmp_path, f"{n}.pt", s) for n, s in (("a", a), ("b", b), ("c", c)))
    with pytest.raises(BigseqError, match=r"hold different model keys \(encoder.layers.0.fc1.weight\)") as e:
        average_main(["--inputs", pa, pb, "--output", str(tmp_path / "avg.pt")])
    assert "\n" not in str(e.value)
    with pytest.raises(BigseqError, match=r"'encoder.layers.0.fc1.weight' is \(9, 4\)"):
        average_main(["--inputs", pa, pc, "--output", str(tmp_path / "avg.pt")])
    with pytest.raises(BigseqError, match="mixes fairseq .pt files"):
        average_main(["--inputs", pa, str(tmp_path), "--output", str(tmp_path / "avg.pt")])
    assert sorted(os.listdir(tmp_path)) == ["a.pt", "b.pt", "c.pt"]
