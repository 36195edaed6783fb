"""The peer benchmark's --alternate: each configuration's median run (a real run), failures kept visible."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from peers.measure import RunResult  # noqa: E402
from peers.report import median_per_run  # noqa: E402


def run(name: str, **outcome) -> RunResult:
    return RunResult(name=name, command=[], **outcome)


def test_median_run_per_configuration_in_first_seen_order():
    runs = [run("b", tokens_per_s=5.0), run("a", tokens_per_s=9.0),
            run("b", tokens_per_s=7.0), run("a", tokens_per_s=3.0),
            run("b", tokens_per_s=6.0), run("a", tokens_per_s=4.0),
            run("c", error="exit 1")]
    kept = median_per_run(runs)
    assert [(r.name, r.tokens_per_s) for r in kept] == [("b", 6.0), ("a", 4.0), ("c", None)]
    even = median_per_run([run("d", tokens_per_s=2.0), run("d", tokens_per_s=8.0)])
    assert even[0].tokens_per_s == 2.0  # the lower middle: a run that happened, not an average
