"""The GPU check's results file: the machine, each step's status, then every figure."""

from __future__ import annotations

import re
from datetime import datetime, timezone


def file_name(dry_run: bool, device: str = "") -> str:
    day = f"{datetime.now(timezone.utc):%Y-%m-%d}"
    slug = re.sub(r"[^a-z0-9]+", "_", device.lower()).strip("_") or "cpu"
    return f"gpu-{day}-{'dry-run' if dry_run else slug}.md"


def _training(runs: dict) -> list[str]:
    lines = ["| run | tokens/s | model TFLOP/s | MFU | measured bf16 matmul peak | setup |",
             "|---|---|---|---|---|---|"]
    for tool, r in runs.items():
        name = "bigseq train" if tool == "bigseq" else "HF Trainer"
        lines.append(f"| {name} | {r['tokens_per_s']:,.0f} | {r['model_tflops']:.3g} | {r['mfu']:.1%} | "
                     f"{r['peak_tflops']:.3g} TFLOP/s | {r['arch']} {r['precision']}, {r['tokens_per_update']:,} "
                     f"tokens per update, median of updates {r['warmup'] + 1}-{r['updates']} |")
    if {"bigseq", "hf"} <= runs.keys():
        lines += ["", f"bigseq / HF Trainer: {runs['bigseq']['tokens_per_s'] / runs['hf']['tokens_per_s']:.2f}x "
                      "tokens/s"]
    return lines


def markdown(facts: dict, results: dict, dry_run: bool, steps) -> str:
    title = f"# bigseq GPU check: {facts.get('device', 'device not read')}"
    when = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    lines = [title, "", f"{when}; " + "; ".join(f"{k} {v}" for k, v in facts.items() if k != "device"), ""]
    if dry_run:
        lines += ["**Dry run on CPU: tiny sizes, Triton interpreter; the figures only show that the script "
                  "works.**", ""]
    lines += ["Command: `make gpu-check` (benchmarks/gpu/check.py); MFU = model FLOPs (6N + attention, PaLM) per "
              "second / the bf16 8192^3 matmul rate measured on this device.", "",
              "| step | status | seconds | summary |", "|---|---|---|---|"]
    for name, _ in steps:
        r = results.get(name)
        lines.append(f"| {name} | {r['status']} | {r['seconds']:.0f} | {r['summary']} |" if r
                     else f"| {name} | not reached | | |")
    for name, heading in (("gpu tests", "GPU tests (failures)"), ("kernels", "Kernels")):
        if results.get(name, {}).get("lines"):
            lines += ["", f"## {heading}", "", *results[name]["lines"]]
    if results.get("_training"):
        lines += ["", "## Training on one GPU", "", *_training(results["_training"])]
    return "\n".join(lines) + "\n"
