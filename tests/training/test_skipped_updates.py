"""Trainer.train_step's bookkeeping: non-finite losses are skipped and counted, too many in a row stop the
run, an fp16 overflow (DeepSpeed skipped the step) is counted apart and is not an update."""

import math

import pytest

from bigseq.errors import BigseqError

from .fakes import FakeEngine, FakeSample, make_trainer


def _update(loss: float) -> list[FakeSample]:
    return [FakeSample(loss, 4, 4)]


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_loss_is_skipped_not_applied(monkeypatch, bad):
    engine = FakeEngine(micro_batches=1)
    trainer = make_trainer(monkeypatch, engine)
    out = trainer.train_step(_update(bad))
    assert (trainer.num_updates, trainer.skipped_nonfinite, trainer.skipped_overflow) == (0, 1, 0)
    assert engine.boundaries == ["skipped"]  # the optimizer was told to skip the step
    assert engine.optimizer.skip_next_step is False  # and only that one
    assert math.isnan(out["gnorm"])


def test_the_nth_non_finite_update_in_a_row_stops_the_run(monkeypatch):
    trainer = make_trainer(monkeypatch, FakeEngine(micro_batches=1), max_nonfinite_updates=3)
    for _ in range(2):
        trainer.train_step(_update(math.nan))
    with pytest.raises(BigseqError, match="non-finite for 3 updates in a row") as err:
        trainer.train_step(_update(math.nan))
    assert "--max-nonfinite-updates" in str(err.value) and "\n" not in str(err.value)
    assert trainer.skipped_nonfinite == 3


def test_a_finite_update_resets_the_count(monkeypatch):
    engine = FakeEngine(micro_batches=1)
    trainer = make_trainer(monkeypatch, engine, max_nonfinite_updates=3)
    for loss in (math.nan, math.nan, 1.0, math.nan, math.nan):
        trainer.train_step(_update(loss))
    assert (trainer.num_updates, trainer.skipped_nonfinite) == (1, 4)
    assert engine.boundaries == ["skipped", "skipped", "applied", "skipped", "skipped"]
    with pytest.raises(BigseqError, match="--max-nonfinite-updates"):
        trainer.train_step(_update(math.nan))


def test_an_fp16_overflow_is_counted_apart_and_is_not_an_update(monkeypatch):
    engine = FakeEngine(micro_batches=2, overflow_updates={2}, grad_norm=0.25)
    trainer = make_trainer(monkeypatch, engine, precision="fp16")
    two_micro_batches = [FakeSample(1.0, 4, 8), FakeSample(3.0, 4, 8)]
    outs = [trainer.train_step(two_micro_batches) for _ in range(3)]
    assert engine.boundaries == ["applied", "overflow", "applied"]
    assert (trainer.num_updates, trainer.skipped_overflow, trainer.skipped_nonfinite) == (2, 1, 0)
    assert [o["gnorm"] for o in outs] == [0.25] * 3  # fp16: DeepSpeed's norm, not one computed here


def test_an_overflow_breaks_a_run_of_non_finite_losses(monkeypatch):
    engine = FakeEngine(micro_batches=1, overflow_updates={3})
    trainer = make_trainer(monkeypatch, engine, max_nonfinite_updates=3, precision="fp16")
    for loss in (math.nan, math.nan, 1.0, math.nan, math.nan):  # the finite third one overflows
        trainer.train_step(_update(loss))
    assert (trainer.num_updates, trainer.skipped_overflow, trainer.skipped_nonfinite) == (0, 1, 4)
