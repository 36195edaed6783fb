"""`bigseq average-checkpoints`: ZeRO checkpoints consolidated, averaged in float64, written as a folder that
generate/validate/--finetune-from-model/to-hf take; mismatched inputs refused before anything is written."""

import os

import pytest
import torch

from bigseq.checkpoint.inference import load_for_inference

from .runner import cli, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def save_dir(tiny_data, tmp_path_factory):
    """Three checkpoints (updates 2, 4, 6) of one ZeRO-1 run."""
    save = str(tmp_path_factory.mktemp("avg") / "save")
    train(tiny_data, ["--max-update", "6", "--zero-stage", "1", "--save-dir", save, "--save-interval-updates", "2",
                      "--keep-last-checkpoints", "3"])
    return save


def _weights(path: str) -> dict[str, torch.Tensor]:
    return load_for_inference(path)[2].state_dict()


def test_the_last_n_checkpoints_average_in_float64(save_dir, tmp_path):
    out = str(tmp_path / "avg")
    proc = cli("average-checkpoints", "--inputs", save_dir, "--num-update-checkpoints", "2", "--output", out,
               check=True)
    assert "checkpoint_4" in proc.stdout and "checkpoint_6" in proc.stdout and "checkpoint_2" not in proc.stdout
    a, b, got = _weights(os.path.join(save_dir, "checkpoint_4")), _weights(os.path.join(save_dir, "checkpoint_6")), \
        _weights(out)
    assert got.keys() == a.keys()
    for name, t in got.items():
        assert torch.equal(t, ((a[name].double() + b[name].double()) / 2).to(t.dtype)), name
    assert not torch.equal(got["embed.tokens.weight"], b["embed.tokens.weight"])  # a real mean, not a copy


def test_copies_of_one_checkpoint_average_to_it_bit_for_bit(save_dir, tmp_path):
    one = os.path.join(save_dir, "checkpoint_6")
    cli("average-checkpoints", "--inputs", one, one, one, "--output", str(tmp_path / "same"), check=True)
    want, got = _weights(one), _weights(str(tmp_path / "same"))
    assert all(torch.equal(got[k], t) for k, t in want.items())
    # the folder is a model users keep working with: a fine-tune starts from it, to-hf exports it
    cli("convert", "to-hf", str(tmp_path / "same"), str(tmp_path / "hf"), check=True)
    assert os.path.isfile(tmp_path / "hf" / "config.json")


def test_bad_inputs_are_one_line_and_write_nothing(save_dir, tiny_data, tmp_path):
    other = str(tmp_path / "other")
    train(tiny_data, ["--arch", "gpt2_tiny", "--max-update", "1", "--save-dir", other])
    cases = [
        (["--inputs", save_dir, os.path.join(other, "checkpoint_1")], "another model"),
        (["--inputs", save_dir, "--num-update-checkpoints", "5"], "holds 3 complete checkpoint(s)"),
        (["--inputs", os.path.join(save_dir, "checkpoint_2")], "one input"),
        (["--inputs", save_dir, "--num-epoch-checkpoints", "2"], "--num-update-checkpoints"),
    ]
    for i, (args, message) in enumerate(cases):
        out = str(tmp_path / f"out{i}")
        proc = cli("average-checkpoints", *args, "--output", out)
        assert proc.returncode != 0 and message in proc.stderr.strip().splitlines()[-1], (args, proc.stderr)
        assert not os.path.exists(out)
