"""Exact resume: 20 updates in one go == 10 updates, stop, rerun to 20 (CPU, fp32)."""

import os

import pytest

from .runner import train, train_losses


def _straight_and_resumed(tiny_data, tmp_path, extra, nproc=1, launcher="bigseq"):
    straight_log, resumed_log = str(tmp_path / "straight.jsonl"), str(tmp_path / "resumed.jsonl")
    common = ["--dropout", "0.1", *extra]
    train(tiny_data, [*common, "--max-update", "20", "--save-dir", str(tmp_path / "a")], nproc=nproc,
          launcher=launcher, log_file=straight_log)
    train(tiny_data, [*common, "--max-update", "10", "--save-dir", str(tmp_path / "b")], nproc=nproc,
          launcher=launcher, log_file=resumed_log)
    proc = train(tiny_data, [*common, "--max-update", "20", "--save-dir", str(tmp_path / "b")], nproc=nproc,
                 launcher=launcher, log_file=resumed_log)
    assert "resumed from" in proc.stdout
    return train_losses(straight_log), train_losses(resumed_log)


def test_resume_is_exact_one_rank(tiny_data, tmp_path):
    # update_freq 2 and an epoch boundary inside the run (the tiny corpus has ~14 updates per epoch)
    straight, resumed = _straight_and_resumed(tiny_data, tmp_path, ["--update-freq", "2", "--batch-size", "4"])
    assert sorted(straight) == list(range(1, 21)) and sorted(resumed) == list(range(1, 21))
    for n in range(11, 21):
        assert resumed[n] == straight[n], f"update {n}: {resumed[n]} != {straight[n]}"
    assert os.path.exists(tmp_path / "b" / "latest")


@pytest.mark.slow
def test_resume_is_exact_two_ranks_zero2(tiny_data, tmp_path):
    straight, resumed = _straight_and_resumed(tiny_data, tmp_path, ["--zero-stage", "2"], nproc=2,
                                              launcher="deepspeed")
    for n in range(11, 21):
        assert resumed[n] == straight[n], f"update {n}: {resumed[n]} != {straight[n]}"
