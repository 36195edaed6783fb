"""The peer benchmark's --alternate: each configuration's median run (a real run), failures kept visible."""

import importlib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def peers(monkeypatch):
    # on sys.path for this test only: benchmarks/kernels.py would shadow the `kernels` package that
    # transformers looks for, and break every later test that builds an HF model
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("peers.measure"), importlib.import_module("peers.report")


def test_median_run_per_configuration_in_first_seen_order(peers):
    measure, report = peers

    def run(name: str, **outcome):
        return measure.RunResult(name=name, command=[], **outcome)

    runs = [run("b", tokens_per_s=5.0), run("a", tokens_per_s=9.0),
            run("b", tokens_per_s=7.0), run("a", tokens_per_s=3.0),
            run("b", tokens_per_s=6.0), run("a", tokens_per_s=4.0),
            run("c", error="exit 1")]
    kept = report.median_per_run(runs)
    assert [(r.name, r.tokens_per_s) for r in kept] == [("b", 6.0), ("a", 4.0), ("c", None)]
    even = report.median_per_run([run("d", tokens_per_s=2.0), run("d", tokens_per_s=8.0)])
    assert even[0].tokens_per_s == 2.0  # the lower middle: a run that happened, not an average
