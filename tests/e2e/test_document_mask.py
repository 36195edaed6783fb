"""`bigseq train --document-mask` end to end: one process, ZeRO-3 (with --mlp-chunks), and two pipeline
stages against one rank."""

import pytest

from .runner import MULTI_RANK, train, train_losses

UPDATES = 4
# several short documents per 32-token row, so the mask changes what each token sees
ARGS = ["--sample-break-mode", "complete", "--max-update", str(UPDATES), "--no-save", "--document-mask"]
pytestmark = pytest.mark.slow


def _losses(tiny_data, tmp_path, name, args, nproc=1):
    log = str(tmp_path / f"{name}.jsonl")
    train(tiny_data, [*args, "--log-file", log], nproc=nproc, launcher=MULTI_RANK if nproc > 1 else "bigseq")
    losses = train_losses(log)
    assert sorted(losses) == list(range(1, UPDATES + 1))
    return losses


def test_document_mask_trains_and_changes_the_loss(tiny_data, tmp_path):
    masked = _losses(tiny_data, tmp_path, "masked", ARGS)
    plain = _losses(tiny_data, tmp_path, "plain", [a for a in ARGS if a != "--document-mask"])
    assert masked[UPDATES] < masked[1]
    assert abs(masked[1] - plain[1]) > 1e-4  # same weights and batch: only attention and positions differ


def test_zero3_with_document_mask_and_mlp_chunks_matches_stage_0(tiny_data, tmp_path):
    # ZeRO-3 gathers each projection again for every recomputed slice of the feed-forward block
    want = _losses(tiny_data, tmp_path, "stage0", ARGS)
    got = _losses(tiny_data, tmp_path, "stage3", [*ARGS, "--zero-stage", "3", "--mlp-chunks", "3"])
    for n in want:
        assert abs(got[n] - want[n]) <= 2e-5, f"update {n}: {got[n]} vs {want[n]}"


@pytest.mark.launcher
def test_two_pipeline_stages_carry_the_document_layout(tiny_data, tmp_path):
    # gpt2_tiny: learned positions (wrong ones would show) and embeddings tied across the two stages
    args = [*ARGS, "--arch", "gpt2_tiny", "--dropout", "0", "--update-freq", "2"]
    want = _losses(tiny_data, tmp_path, "plain", args)
    got = _losses(tiny_data, tmp_path, "pp2", [*args, "--pipeline-parallel-size", "2"], nproc=2)
    for n in want:
        assert abs(got[n] - want[n]) <= 1e-5, f"update {n}: {got[n]} vs {want[n]}"
