"""Trainer._run_update: each micro-batch's summed loss is scaled so the update's gradient is that of the
mean loss over the GLOBAL batch, whatever the accumulation or the world size."""

import pytest
import torch

from .fakes import FakeEngine, FakeSample, make_trainer

# three micro-batches of one update: (summed loss, this rank's tokens, global tokens of the micro-batch)
SAMPLES = [FakeSample(6.0, 3, 5), FakeSample(14.0, 7, 7), FakeSample(2.0, 1, 8)]
GLOBAL_TOKENS = 5 + 7 + 8


def test_one_rank_scales_every_micro_batch_by_one_over_the_update_tokens(monkeypatch):
    engine = FakeEngine(micro_batches=len(SAMPLES))
    trainer = make_trainer(monkeypatch, engine)
    out = trainer.train_step(SAMPLES)
    want = [s.loss_value / GLOBAL_TOKENS for s in SAMPLES]
    assert [loss for loss, _ in engine.backward_calls] == pytest.approx(want, rel=1e-6)
    assert not any(scale_wrt_gas for _, scale_wrt_gas in engine.backward_calls)  # no extra 1/update_freq
    # DeepSpeed counted the first two as micro-steps only: one optimizer step for the update
    assert engine.boundaries == ["applied"] and trainer.num_updates == 1
    # the accumulated gradient (weight 1) is the mean loss over the update's tokens, computed here for fp32
    assert out["gnorm"] == pytest.approx(sum(want), rel=1e-6)
    assert (out["loss"], out["ntokens"], out["nsentences"]) == (22.0, 11.0, 3.0)
    assert out["lr"] == 0.5


def test_two_ranks_scale_by_world_size_because_deepspeed_averages_gradients(monkeypatch):
    def other_rank_logs_the_same(sums, *args, **kwargs):
        sums.mul_(2)

    monkeypatch.setattr(torch.distributed, "all_reduce", other_rank_logs_the_same)
    engine = FakeEngine(micro_batches=len(SAMPLES))
    trainer = make_trainer(monkeypatch, engine, world_size=2)
    out = trainer.train_step(SAMPLES)
    want = [2 * s.loss_value / GLOBAL_TOKENS for s in SAMPLES]
    assert [loss for loss, _ in engine.backward_calls] == pytest.approx(want, rel=1e-6)
    assert (out["loss"], out["ntokens"]) == (44.0, 22.0)  # logged numbers are the all-reduced sums


@pytest.mark.parametrize("stage,divisor", [(0, 2), (1, 2), (2, 2), (3, 4)])
def test_sequence_parallel_scale_follows_how_each_zero_stage_reduces(monkeypatch, stage, divisor):
    """4 ranks = 2 SP x 2 DP. ZeRO 0-2 sum the SP ranks' gradients and average over the 2 replicas;
    ZeRO-3 averages over all 4 ranks. The scale undoes exactly that division (a 2x or 0.5x otherwise)."""
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda sums, *args, **kwargs: sums)
    engine = FakeEngine(micro_batches=len(SAMPLES), zero_stage=stage)
    make_trainer(monkeypatch, engine, world_size=4, sequence_parallel=2).train_step(SAMPLES)
    want = [divisor * s.loss_value / GLOBAL_TOKENS for s in SAMPLES]
    assert [loss for loss, _ in engine.backward_calls] == pytest.approx(want, rel=1e-6)


def test_an_update_of_one_micro_batch_gets_the_same_gradient_as_the_split_one(monkeypatch):
    whole = FakeSample(sum(s.loss_value for s in SAMPLES), 11, GLOBAL_TOKENS)
    engine = FakeEngine(micro_batches=1)
    out = make_trainer(monkeypatch, engine).train_step([whole])
    split = make_trainer(monkeypatch, FakeEngine(micro_batches=len(SAMPLES))).train_step(SAMPLES)
    assert out["gnorm"] == pytest.approx(split["gnorm"], rel=1e-6)
