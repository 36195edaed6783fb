"""LR schedules: pinned curves, the torch scheduler follows lr_at, exact resume."""

import argparse
import io
import math

import pytest
import torch

from bigseq.config import add_dataclass_args
from bigseq.errors import BigseqError
from bigseq.optim.lr_scheduler import build_lr_scheduler, lr_schedule
from bigseq.optim.lr_scheduler.cosine import CosineConfig
from bigseq.optim.lr_scheduler.fixed import FixedConfig
from bigseq.optim.lr_scheduler.inverse_sqrt import InverseSqrtConfig
from bigseq.optim.lr_scheduler.polynomial_decay import PolynomialDecayConfig
from bigseq.optim.lr_scheduler.wsd import WSDConfig

LR = 1e-3


def curve(name, cfg, max_update=None):
    s = lr_schedule(name, cfg, lr=LR, max_update=max_update)
    return lambda n: s.lr_at(n)


def assert_pinned(lr_at, pins):
    for update, want in pins.items():
        assert lr_at(update) == pytest.approx(want, rel=1e-12, abs=1e-15), f"update {update}"


def test_fixed():
    assert_pinned(curve("fixed", FixedConfig(warmup_updates=4)), {0: 0.0, 1: 2.5e-4, 2: 5e-4, 4: LR, 10**6: LR})
    assert_pinned(curve("fixed", FixedConfig()), {0: LR, 7: LR})


def test_inverse_sqrt():
    lr_at = curve("inverse_sqrt", InverseSqrtConfig(warmup_updates=100, warmup_init_lr=1e-7))
    assert_pinned(lr_at, {0: 1e-7, 50: 1e-7 + 0.5 * (LR - 1e-7), 100: LR, 400: LR / 2, 10000: LR / 10})
    assert_pinned(curve("inverse_sqrt", InverseSqrtConfig(warmup_updates=0)), {0: LR, 1: LR, 4: LR / 2})


def test_cosine_single_period_to_max_update():
    lr_at = curve("cosine", CosineConfig(warmup_updates=10, min_lr=1e-5), max_update=110)
    span = LR - 1e-5
    assert_pinned(lr_at, {0: 0.0, 5: LR / 2, 10: LR, 35: 1e-5 + 0.5 * span * (1 + math.cos(math.pi / 4)),
                          60: 1e-5 + span / 2, 110: 1e-5, 500: 1e-5})


def test_cosine_restarts_shrink_and_lengthen():
    lr_at = curve("cosine", CosineConfig(lr_period_updates=100, lr_shrink=0.5, min_lr=0.0))
    assert_pinned(lr_at, {0: LR, 50: LR / 2, 100: LR / 2, 150: LR / 4, 200: LR / 4})
    lr_at = curve("cosine", CosineConfig(lr_period_updates=100, t_mult=2.0, lr_shrink=0.5))
    # periods [0, 100), [100, 300), [300, 700)
    assert_pinned(lr_at, {50: LR / 2, 100: LR / 2, 200: LR / 4, 300: LR / 4, 500: LR / 8})


def test_polynomial_decay():
    cfg = PolynomialDecayConfig(warmup_updates=10, end_learning_rate=1e-5, power=2.0)
    lr_at = curve("polynomial_decay", cfg, max_update=110)
    assert_pinned(lr_at, {0: 0.0, 5: LR / 2, 10: LR, 60: (LR - 1e-5) * 0.25 + 1e-5, 110: 1e-5, 500: 1e-5})
    # --total-num-update wins over --max-update; power 1 is linear
    lr_at = curve("polynomial_decay", PolynomialDecayConfig(total_num_update=200), max_update=10**6)
    assert_pinned(lr_at, {0: LR, 50: 0.75 * LR, 150: 0.25 * LR, 200: 0.0})


@pytest.mark.parametrize("shape,half", [("linear", 0.5), ("cosine", 0.5), ("1-sqrt", 1 - math.sqrt(0.5))])
def test_wsd(shape, half):
    cfg = WSDConfig(warmup_updates=10, decay_fraction=0.2, decay_shape=shape, min_lr=1e-5)
    lr_at = curve("wsd", cfg, max_update=100)  # decay: the last 20 updates, from 80
    quarter = {"linear": 0.75, "cosine": 0.5 * (1 + math.cos(math.pi / 4)), "1-sqrt": 0.5}[shape]
    assert_pinned(lr_at, {0: 0.0, 5: LR / 2, 10: LR, 50: LR, 80: LR, 85: 1e-5 + (LR - 1e-5) * quarter,
                          90: 1e-5 + (LR - 1e-5) * half, 100: 1e-5, 200: 1e-5})


def test_wsd_decay_updates_overrides_fraction():
    lr_at = curve("wsd", WSDConfig(decay_updates=50, decay_shape="linear"), max_update=1000)
    assert_pinned(lr_at, {949: LR, 950: LR, 975: LR / 2, 1000: 0.0})


@pytest.mark.parametrize("name,cfg", [("cosine", CosineConfig()), ("polynomial_decay", PolynomialDecayConfig()),
                                      ("wsd", WSDConfig())])
def test_schedules_needing_a_run_length_say_so(name, cfg):
    with pytest.raises(BigseqError, match="--max-update"):
        lr_schedule(name, cfg, lr=LR, max_update=0)


def test_inconsistent_lengths_are_user_errors():
    with pytest.raises(BigseqError, match="--warmup-updates"):
        lr_schedule("polynomial_decay", PolynomialDecayConfig(warmup_updates=100), lr=LR, max_update=100)
    with pytest.raises(BigseqError, match="decay"):
        lr_schedule("wsd", WSDConfig(warmup_updates=60, decay_updates=50), lr=LR, max_update=100)
    with pytest.raises(BigseqError, match="--min-lr"):
        lr_schedule("cosine", CosineConfig(min_lr=1.0), lr=LR, max_update=100)


ALL = [("fixed", FixedConfig(warmup_updates=5)), ("inverse_sqrt", InverseSqrtConfig(warmup_updates=5)),
       ("cosine", CosineConfig(warmup_updates=5)), ("polynomial_decay", PolynomialDecayConfig(warmup_updates=5)),
       ("wsd", WSDConfig(warmup_updates=5, decay_fraction=0.3))]


def make_optimizer():
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(3))
    # the second group runs at half the peak lr throughout
    return torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": LR / 2}], lr=LR)


def train(opt, sched, n):
    lrs = []
    for _ in range(n):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.zero_grad()
        sum((p ** 2).sum() for g in opt.param_groups for p in g["params"]).backward()
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("name,cfg", ALL)
def test_stepping_a_real_optimizer_n_times_gives_lr_at_n(name, cfg):
    opt = make_optimizer()
    sched = build_lr_scheduler(name, cfg, opt, lr=LR, max_update=30)
    lr_at = lr_schedule(name, cfg, lr=LR, max_update=30).lr_at
    for n, (lr0, lr1) in enumerate(train(opt, sched, 30) + [[g["lr"] for g in opt.param_groups]]):
        assert lr0 == lr_at(n)  # exactly: the lr a resumed run recomputes is bit-identical
        assert lr1 == pytest.approx(lr_at(n) / 2, rel=1e-12, abs=1e-18)
    assert sched.get_last_lr()[0] == lr_at(30)


@pytest.mark.parametrize("name,cfg", ALL)
def test_resume_continues_exactly(name, cfg):
    opt = make_optimizer()
    whole = train(opt, build_lr_scheduler(name, cfg, opt, lr=LR, max_update=30), 30)

    opt = make_optimizer()
    sched = build_lr_scheduler(name, cfg, opt, lr=LR, max_update=30)
    first = train(opt, sched, 12)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # plain data only: loads under the safe loader

    opt = make_optimizer()
    sched = build_lr_scheduler(name, cfg, opt, lr=LR, max_update=30)
    sched.load_state_dict(saved["sched"])  # either order works: the lr is recomputed from the position
    opt.load_state_dict(saved["opt"])
    assert first + train(opt, sched, 18) == whole


def test_fairseq_flag_names():
    flags = set()
    for cfg_cls in (FixedConfig, InverseSqrtConfig, CosineConfig, PolynomialDecayConfig, WSDConfig):
        parser = argparse.ArgumentParser()
        add_dataclass_args(parser, cfg_cls, "lr_scheduler")
        flags |= {o for a in parser._actions for o in a.option_strings}
    assert {"--warmup-updates", "--warmup-init-lr", "--min-lr", "--end-learning-rate", "--power",
            "--total-num-update", "--lr-period-updates", "--t-mult", "--lr-shrink",
            "--decay-fraction", "--decay-updates", "--decay-shape"} <= flags
