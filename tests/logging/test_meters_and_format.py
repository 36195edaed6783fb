"""Meters and stat formatting."""

import pytest
import torch

from bigseq.logging import AverageMeter, StopwatchMeter, TimeMeter, format_stat, meters
from bigseq.logging.format import format_pair


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(meters.time, "perf_counter", c)
    return c


def test_average_meter_is_weighted_and_restorable():
    m = AverageMeter()
    m.update(2.0, n=1)
    m.update(5.0, n=3)
    assert m.avg == pytest.approx(17 / 4) and m.val == 5.0 and m.count == 4
    m2 = AverageMeter()
    m2.load_state_dict(m.state_dict())
    assert m2.avg == m.avg


def test_time_meter_throughput_and_wall_carried_over_resume(clock):
    m = TimeMeter()
    clock.now += 4.0
    m.update(2000)
    assert m.avg == pytest.approx(500.0) and m.elapsed_time == pytest.approx(4.0)
    resumed = TimeMeter()
    resumed.load_state_dict(m.state_dict())
    clock.now += 1.0
    assert resumed.elapsed_time == pytest.approx(5.0)  # 'wall' keeps counting across a restart


def test_stopwatch_sums_intervals(clock):
    sw = StopwatchMeter()
    assert sw.stop() == 0.0  # never started: nothing measured
    for seconds in (1.0, 3.0):
        sw.start()
        clock.now += seconds
        sw.stop(n=2)
    assert sw.sum == pytest.approx(4.0) and sw.n == 4 and sw.avg == pytest.approx(1.0)
    sw.start()
    clock.now += 0.5
    assert sw.elapsed_time == pytest.approx(4.5)


@pytest.mark.parametrize("value,key,want", [
    (5.12345, None, "5.12"), (167.83, None, "168"), (3e-4, None, "0.0003"), (8.629e-05, None, "0.0000863"),
    (1.2, None, "1.2"), (-0.04567, None, "-0.0457"), (4520.3, None, "4,520"), (123456.7, None, "123,457"),
    (7, None, "7"), (0.0, None, "0"), (2.5e-9, None, "2.50e-09"), (12.4, "wall", "12s"),
    (torch.tensor(2.5), None, "2.5"), ("fp16", None, "fp16"), (float("inf"), None, "inf"),
])
def test_format_stat(value, key, want):
    assert format_stat(value, key) == want


def test_format_stat_reads_meters():
    m = AverageMeter()
    m.update(0.123456)
    assert format_stat(m) == "0.123"


@pytest.mark.parametrize("tflops,want", [
    (8.629e-05, "model 86.3 MFLOP/s"), (0.0213, "model 21.3 GFLOP/s"), (312.4, "model 312 TFLOP/s"),
    (1500.0, "model 1.5 PFLOP/s"), (0.0, "tflops 0"),
])
def test_flops_are_shown_in_the_unit_that_fits(tflops, want):
    assert format_pair("tflops", tflops) == want
    assert format_pair("lr", 8.629e-05) == "lr 0.0000863"
