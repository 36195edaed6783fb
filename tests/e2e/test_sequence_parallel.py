"""--sequence-parallel-size 2 (DeepSpeed-Ulysses) through the real launcher == one rank.

SGD with clipping off, so a gradient 2x or 0.5x too large (ZeRO 0-2 sum over the SP ranks, ZeRO-3
averages over all ranks) changes the weights after 3 updates, where Adam and clipping would hide it:
the losses, gradient norms AND the weights must match for every ZeRO stage. Also: SP=2 x DP=2 on 4 ranks,
an exact resume, SP=2 -> universal -> SP=1, and each bad input as one line.
"""

import json
import os
import shutil

import pytest
import torch

from bigseq.checkpoint import files
from bigseq.checkpoint.inference import plain_state_dict

from .runner import MULTI_RANK, train, train_in_process
from .test_bad_input import assert_one_clear_line

SGD = ["--optimizer", "sgd", "--lr", "0.5", "--clip-norm", "0", "--disable-validation"]
SP2 = ["--sequence-parallel-size", "2"]
pytestmark = [pytest.mark.slow]


def _records(log_file: str) -> dict[int, dict]:
    with open(log_file) as f:
        return {r["num_updates"]: r for r in map(json.loads, f) if r.get("tag") == "train"}


def _weights(save_dir: str, tag: str) -> dict[str, torch.Tensor]:
    meta = files.read_meta(os.path.join(save_dir, tag))
    return plain_state_dict(save_dir, tag, meta, task=None)


def _run(tiny_data, root, name: str, args: list[str], nproc: int = 2, timeout: int = 600):
    """-> (per-update log records, save dir)."""
    save, log = str(root / name), str(root / f"{name}.jsonl")
    train(tiny_data, [*SGD, *args, "--save-dir", save], nproc=nproc, launcher=MULTI_RANK if nproc > 1 else "bigseq",
          log_file=log, timeout=timeout)
    return _records(log), save


def _assert_matches(got: dict, want: dict, updates) -> None:
    for n in updates:
        for key, tol in (("loss", 1e-5), ("gnorm", 1e-5)):
            assert abs(got[n][key] - want[n][key]) <= tol * max(1.0, abs(want[n][key])), \
                f"update {n} {key}: {got[n][key]} vs one rank's {want[n][key]}"


def _assert_same_weights(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name, w in want.items():
        diff = float((got[name].detach().float() - w.float()).abs().max())
        assert diff < 1e-5, f"{name}: max abs diff {diff} from the one-rank weights"


@pytest.fixture(scope="module")
def one_rank(tiny_data, tmp_path_factory):
    """5 SGD updates on one rank, saved at update 3: the oracle."""
    root = tmp_path_factory.mktemp("sp_ref")
    records, save = _run(tiny_data, root, "ref", ["--max-update", "5", "--save-interval-updates", "3"], nproc=1)
    assert sorted(records) == [1, 2, 3, 4, 5]
    return records, _weights(save, "checkpoint_3")


@pytest.mark.launcher
@pytest.mark.parametrize("stage", [0, 2, 3])  # stage 1: test_sp2_resume_is_exact
def test_sp2_matches_one_rank(tiny_data, tmp_path, one_rank, stage):
    records, save = _run(tiny_data, tmp_path, "sp", [*SP2, "--zero-stage", str(stage), "--max-update", "3"])
    _assert_matches(records, one_rank[0], [1, 2, 3])
    _assert_same_weights(_weights(save, "checkpoint_3"), one_rank[1])


@pytest.mark.launcher
def test_sp2_times_dp2_on_four_ranks_matches_one_rank(tiny_data, tmp_path, one_rank):
    # the data-parallel size (2) and the world (4) differ: a scale by either one alone is 2x off at ZeRO 1
    records, save = _run(tiny_data, tmp_path, "sp", [*SP2, "--zero-stage", "1", "--max-update", "3"], nproc=4,
                         timeout=900)
    _assert_matches(records, one_rank[0], [1, 2, 3])
    _assert_same_weights(_weights(save, "checkpoint_3"), one_rank[1])


@pytest.mark.launcher
def test_sp2_zero1_matches_one_rank_and_resumes_exactly(tiny_data, tmp_path, one_rank):
    straight, save = _run(tiny_data, tmp_path, "straight", [*SP2, "--zero-stage", "1", "--max-update", "5",
                                                             "--save-interval-updates", "3"])
    _assert_matches(straight, one_rank[0], [1, 2, 3, 4, 5])
    _assert_same_weights(_weights(save, "checkpoint_3"), one_rank[1])
    stopped = str(tmp_path / "stopped")
    os.makedirs(stopped)
    shutil.copytree(os.path.join(save, "checkpoint_3"), os.path.join(stopped, "checkpoint_3"))
    with open(os.path.join(stopped, "latest"), "w") as f:
        f.write("checkpoint_3")
    resumed, _ = _run(tiny_data, tmp_path, "stopped", [*SP2, "--zero-stage", "1", "--max-update", "5"])
    assert sorted(resumed) == [4, 5]
    for n in (4, 5):
        assert resumed[n]["loss"] == straight[n]["loss"], f"update {n}: {resumed[n]} != {straight[n]}"


@pytest.mark.launcher
def test_sp2_through_universal_resumes_on_one_rank(tiny_data, tmp_path):
    from .runner import BIN, run
    adam = ["--optimizer", "adamw", "--lr", "0.003", "--disable-validation"]  # ds_to_universal reads Adam's moments
    straight, sp_log = str(tmp_path / "straight.jsonl"), str(tmp_path / "sp.jsonl")  # SP=2, then SP=1
    train(tiny_data, [*adam, "--max-update", "5", "--no-save"], log_file=straight)
    save = str(tmp_path / "sp")
    train(tiny_data, [*adam, *SP2, "--zero-stage", "2", "--max-update", "3", "--save-dir", save], nproc=2,
          launcher=MULTI_RANK, log_file=sp_log)
    run([os.path.join(BIN, "bigseq"), "convert", "universal", save], check=True)
    proc = train(tiny_data, [*adam, "--zero-stage", "2", "--max-update", "5", "--save-dir", save], log_file=sp_log)
    assert f"resumed from {save} at update 3" in proc.stdout
    want, got = _records(straight), _records(sp_log)
    for n in range(1, 6):
        assert abs(got[n]["loss"] - want[n]["loss"]) <= 1e-5, f"update {n}: {got[n]['loss']} vs {want[n]['loss']}"


def _has_document_mask() -> bool:
    from bigseq.tasks.language_modeling import LanguageModelingConfig
    return "document_mask" in LanguageModelingConfig.__dataclass_fields__


@pytest.mark.launcher
@pytest.mark.skipif(not _has_document_mask(), reason="--document-mask is not in this tree yet (branch docmask)")
def test_sp2_with_document_mask_matches_one_rank(tiny_data, tmp_path):
    # cu_seqlens span whole rows, as each rank's attention sees them after the all-to-all
    packed = ["--document-mask", "--sample-break-mode", "complete", "--max-update", "3", "--no-save"]
    one, sp = str(tmp_path / "one.jsonl"), str(tmp_path / "sp.jsonl")
    train(tiny_data, [*SGD, *packed], log_file=one)
    train(tiny_data, [*SGD, *packed, *SP2, "--zero-stage", "2"], nproc=2, launcher=MULTI_RANK, log_file=sp)
    _assert_matches(_records(sp), _records(one), [1, 2, 3])


@pytest.mark.parametrize("args,needle", [
    (["--sequence-parallel-size", "3"], "--decoder-attention-heads 4 is not divisible by --sequence-parallel-size 3"),
    (["--sequence-parallel-size", "4"], "--decoder-kv-heads 2 is not divisible by --sequence-parallel-size 4"),
    (["--sequence-parallel-size", "2", "--tokens-per-sample", "33"], "--tokens-per-sample 33 is not divisible"),
    (["--sequence-parallel-size", "2", "--pipeline-parallel-size", "2"],
     "--sequence-parallel-size 2 does not combine with --pipeline-parallel-size 2"),
    (["--sequence-parallel-size", "0"], "--sequence-parallel-size must be >= 1"),
])
def test_bad_sequence_parallel_input_is_one_line(tiny_data, args, needle):
    assert_one_clear_line(train_in_process(tiny_data, ["--no-save", "--max-update", "1", *args]), needle)


def test_sequence_parallel_not_dividing_the_world_is_one_line(tiny_data, tmp_path):
    proc = train(tiny_data, [*SP2, "--no-save", "--max-update", "1"], check=False)  # one process
    assert_one_clear_line(proc, "--sequence-parallel-size 2 does not divide the world size 1")
