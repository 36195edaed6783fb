"""--tensor-parallel-size through the real launcher: the same global batch gives one process's losses and
gradient norms (a gradient off by the TP or DP degree shows in the norm), and a TP=2 checkpoint resumes
on one process through the universal format (which needs AutoTP's conversion schema in the checkpoint)."""

import json
import os
import shutil

import pytest

from .runner import BIN, MULTI_RANK, run, train

pytestmark = [pytest.mark.slow, pytest.mark.launcher]
UPDATES = 6


def _records(log_file: str) -> dict[int, tuple[float, float]]:
    """update -> (loss, gnorm) from a --log-file written with --log-interval 1."""
    with open(log_file) as f:
        recs = [json.loads(line) for line in f]
    return {int(r["num_updates"]): (float(r["loss"]), float(r["gnorm"])) for r in recs if r.get("tag") == "train"}


def _assert_close(got: dict, want: dict, updates, atol=1e-5):
    assert sorted(got) == list(updates), sorted(got)
    for n in updates:
        for what, a, b in zip(("loss", "gnorm"), got[n], want[n]):
            assert abs(a - b) <= atol * max(1.0, abs(b)), f"update {n} {what}: {a} vs {b}"


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    log = str(tmp_path_factory.mktemp("tp_ref") / "log.jsonl")
    train(tiny_data, ["--max-update", str(UPDATES), "--no-save"], log_file=log)
    return _records(log)


@pytest.mark.parametrize("stage", [0, 3])
def test_tp2_matches_one_process(tiny_data, tmp_path, reference, stage):
    log = str(tmp_path / "log.jsonl")
    proc = train(tiny_data, ["--max-update", str(UPDATES), "--no-save", "--tensor-parallel-size", "2",
                             "--zero-stage", str(stage)], nproc=2, launcher=MULTI_RANK, log_file=log)
    assert "tensor parallel: 2 x 1 data-parallel" in proc.stdout
    _assert_close(_records(log), reference, range(1, UPDATES + 1))


def test_tp2_by_dp2_matches_one_process(tiny_data, tmp_path, reference):
    log = str(tmp_path / "log.jsonl")
    train(tiny_data, ["--max-update", str(UPDATES), "--no-save", "--tensor-parallel-size", "2", "--zero-stage", "1"],
          nproc=4, launcher=MULTI_RANK, log_file=log, timeout=900)
    _assert_close(_records(log), reference, range(1, UPDATES + 1))


def test_tp2_checkpoint_resumes_on_one_process_through_universal(tiny_data, tmp_path, reference):
    save, half = str(tmp_path / "save"), UPDATES // 2
    first, second = str(tmp_path / "first.jsonl"), str(tmp_path / "second.jsonl")
    train(tiny_data, ["--max-update", str(half), "--save-dir", save, "--tensor-parallel-size", "2",
                      "--zero-stage", "1"], nproc=2, launcher=MULTI_RANK, log_file=first)
    _assert_close(_records(first), reference, range(1, half + 1))
    plain = str(tmp_path / "plain")
    shutil.copytree(save, plain)
    refused = train(tiny_data, ["--max-update", str(UPDATES), "--save-dir", plain, "--zero-stage", "1"],
                    check=False)
    assert "--tensor-parallel-size 2 shards, this run uses 1" in refused.stderr.strip().splitlines()[-1]
    # ds_to_universal merges each sharded weight's slices and keeps one copy of each replicated one
    run([os.path.join(BIN, "bigseq"), "convert", "universal", save], check=True)
    assert os.path.exists(os.path.join(save, f"checkpoint_{half}_universal"))
    train(tiny_data, ["--max-update", str(UPDATES), "--save-dir", save, "--zero-stage", "1"], log_file=second)
    _assert_close(_records(second), reference, range(half + 1, UPDATES + 1))
