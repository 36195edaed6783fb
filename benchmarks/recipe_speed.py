"""Training speed of the quickstart recipe (Llama-style, CPU) in fp32 and bf16, side by side.

    python benchmarks/recipe_speed.py [--updates 120] [--data quickstart/data]

Needs the binarized quickstart data (`make quickstart` builds it). Each precision trains
the recipe for --updates updates in its own `bigseq train` process (no checkpoints, no
validation); tokens/s is the median of the logged intervals after the first (warm-up).
Alternating runs, two each, so a busy spell on the machine hits both. Writes
benchmarks/results/recipe_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from bigseq.distributed.cpu_features import describe_cpu, fastest_cpu_precision

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "launch" / "recipes" / "quickstart.yaml"


def run_once(data: str, precision: str, updates: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "log.jsonl")
        cmd = [sys.executable, "-m", "bigseq.cli.main", "train", data, "--config", str(RECIPE), "--precision",
               precision, "--max-update", str(updates), "--no-save", "--save-dir", os.path.join(tmp, "none"),
               "--disable-validation", "--log-interval", "10", "--log-format", "json", "--log-file", log]
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rates = [r["tokens_per_s"] for r in map(json.loads, open(log)) if r.get("tag") == "train"
                 and "tokens_per_s" in r]
    return rates[1:]  # the first interval includes warm-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=120)
    parser.add_argument("--data", default=str(ROOT / "quickstart" / "data"))
    args = parser.parse_args()
    if not os.path.isdir(args.data):
        raise SystemExit(f"error: {args.data} not found; run `make quickstart` first (it builds the data)")
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(2):
        for precision in rates:
            rates[precision] += run_once(args.data, precision, args.updates)
            print(f"{precision}: {statistics.median(rates[precision]):,.0f} tok/s so far", flush=True)
    fp32 = statistics.median(rates["fp32"])
    rows = [f"| {p} | {statistics.median(r):,.0f} | {statistics.median(r) / fp32:.2f}x |" for p, r in rates.items()]
    out = ROOT / "benchmarks" / "results" / "recipe_speed.md"
    out.write_text("\n".join([
        "# Quickstart recipe training speed (CPU)", "",
        f"{datetime.now(timezone.utc):%Y-%m-%d}, {platform.machine()}, {describe_cpu()}, "
        f"{os.cpu_count()} cores; llama-style 4 x 128, 128 tokens x 32 sentences per update; "
        f"median tokens/s over logged intervals of 10 updates (first dropped), 2 runs x {args.updates} updates each.",
        "", f"Command: `python benchmarks/recipe_speed.py --updates {args.updates}`", "",
        "| precision | tokens/s | vs fp32 |", "|---|---:|---:|", *rows, ""]))
    print(out.read_text())
    print(f"by its measured matmul speeds this CPU runs {fastest_cpu_precision()} fastest ({describe_cpu()})")


if __name__ == "__main__":
    main()
