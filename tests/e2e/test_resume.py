"""Exact resume: 20 updates in one go == 10 updates, stop, rerun to 20 (CPU, fp32), also when the rerun
switches activation checkpointing on or off (it recomputes, it changes no number)."""

import os

import pytest

from .runner import MULTI_RANK, train, train_losses

# update_freq 2 and an epoch boundary inside the run (the tiny corpus has ~14 updates per epoch)
ONE_RANK = ["--dropout", "0.1", "--update-freq", "2", "--batch-size", "4"]
RECOMPUTE = ["--activation-checkpointing"]


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


@pytest.fixture(scope="module")
def straight_one_rank(tiny_data, tmp_path_factory):
    """Per-update losses of 20 updates in one go, without activation checkpointing."""
    root = tmp_path_factory.mktemp("straight")
    log = str(root / "straight.jsonl")
    train(tiny_data, [*ONE_RANK, "--max-update", "20", "--save-dir", str(root / "a")], log_file=log)
    losses = train_losses(log)
    assert sorted(losses) == list(range(1, 21))
    return losses


def _stopped_at_10_and_resumed(tiny_data, save: str, first: list[str], then: list[str]):
    """(per-update losses of both runs, the resuming run): 10 updates with `first`, rerun to 20 with `then`."""
    log = os.path.join(os.path.dirname(save), "resumed.jsonl")
    train(tiny_data, [*ONE_RANK, *first, "--max-update", "10", "--save-dir", save], log_file=log)
    proc = train(tiny_data, [*ONE_RANK, *then, "--max-update", "20", "--save-dir", save], log_file=log)
    assert f"resumed from {save} at update 10" in proc.stdout
    return train_losses(log), proc


def _assert_follows(resumed: dict, straight: dict, updates) -> None:
    assert sorted(resumed) == list(range(1, 21))
    for n in updates:
        assert resumed[n] == straight[n], f"update {n}: {resumed[n]} != {straight[n]}"


def test_resume_is_exact_one_rank(tiny_data, tmp_path, straight_one_rank):
    save = str(tmp_path / "b")
    resumed, _ = _stopped_at_10_and_resumed(tiny_data, save, [], [])
    _assert_follows(resumed, straight_one_rank, range(11, 21))
    assert os.path.exists(os.path.join(save, "latest"))


def test_resume_switching_activation_checkpointing_on(tiny_data, tmp_path, straight_one_rank):
    resumed, proc = _stopped_at_10_and_resumed(tiny_data, str(tmp_path / "b"), [], RECOMPUTE)
    assert "activation checkpointing: every 1 layer(s)" in proc.stdout
    _assert_follows(resumed, straight_one_rank, range(11, 21))


def test_resume_switching_activation_checkpointing_off(tiny_data, tmp_path, straight_one_rank):
    save = str(tmp_path / "b")
    resumed, proc = _stopped_at_10_and_resumed(tiny_data, save, RECOMPUTE, [])
    assert "activation checkpointing" not in proc.stdout
    _assert_follows(resumed, straight_one_rank, range(1, 21))  # recomputed updates 1-10 included
    # its weights start a fine-tuning run without recomputation as well
    log = str(tmp_path / "tuned.jsonl")
    proc = train(tiny_data, [*ONE_RANK, "--max-update", "1", "--no-save", "--finetune-from-model",
                             os.path.join(save, "checkpoint_10")], log_file=log)
    assert "done: 1 updates" in proc.stdout
    assert train_losses(log)[1] < straight_one_rank[1] - 0.3  # the trained weights, not a fresh model's


@pytest.mark.slow
@pytest.mark.launcher
def test_resume_is_exact_two_ranks_zero2(tiny_data, tmp_path):
    straight, resumed = _straight_and_resumed(tiny_data, tmp_path, ["--zero-stage", "2"], nproc=2,
                                              launcher=MULTI_RANK)
    for n in range(11, 21):
        assert resumed[n] == straight[n], f"update {n}: {resumed[n]} != {straight[n]}"
