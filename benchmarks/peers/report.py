"""The results table (printed and written as Markdown) and the facts about the machine it ran on."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

from peers.measure import QUIET_LOAD_CORES, RunResult


def machine_facts() -> dict[str, str]:
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor() or "unknown")
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    bf16_isa = [f for f in ("avx512_bf16", "amx_bf16") if f in flags.split()]
    return {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "nproc": str(os.cpu_count()),
            "cpu": cpu_model, "bf16 instructions": ", ".join(bf16_isa) or "none",
            "load average before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "python": platform.python_version()}


HEADER = ["run", "tokens/s", "vs fairseq fp32", "tool's own tokens/s", "other load (cores)", "notes"]


def best_per_run(results: list[RunResult]) -> list[RunResult]:
    """For each run name (in first-seen order), its repeat with the highest tokens/s (else its last failure)."""
    best: dict[str, RunResult] = {}
    for r in results:
        kept = best.get(r.name)
        if kept is None or (r.tokens_per_s or 0) > (kept.tokens_per_s or 0):
            best[r.name] = r
    return list(best.values())


def median_per_run(results: list[RunResult]) -> list[RunResult]:
    """For each run name (in first-seen order), its run with the median tokens/s (the lower middle one for an
    even count: always a real run), else its last failure."""
    names = list(dict.fromkeys(r.name for r in results))
    kept = []
    for name in names:
        done = sorted((r for r in results if r.name == name and r.tokens_per_s), key=lambda r: r.tokens_per_s)
        kept.append(done[(len(done) - 1) // 2] if done else [r for r in results if r.name == name][-1])
    return kept


def table_rows(results: list[RunResult], baseline: str) -> list[list[str]]:
    base = next((r.tokens_per_s for r in results if r.name == baseline and r.tokens_per_s), None)
    rows = []
    for r in results:
        if r.tokens_per_s is None:
            rows.append([r.name, "failed", "", "", "", r.error or ""])
            continue
        ratio = f"{r.tokens_per_s / base:.2f}x" if base else "n/a"
        own = f"{r.self_reported_tokens_per_s:,.0f}" if r.self_reported_tokens_per_s else "-"
        note = (f"{r.timed_updates} updates timed, {r.windows_used} of {len(r.window_rates)} windows used"
                + (f"; {r.error}" if r.error else ""))
        rows.append([r.name, f"{r.tokens_per_s:,.0f}", ratio, own, f"{r.other_load_cores:.2f}", note])
    return rows


def describe_run(r: RunResult) -> str:
    """One line per repeat: median, mean and every window's rate."""
    if r.tokens_per_s is None:
        return f"{r.name} (round {r.round}): failed: {r.error}"
    windows = ", ".join(f"{x:,.0f} ({load:.1f})" for x, load in zip(r.window_rates, r.window_loads))
    size = f"{r.parameters:,} parameters, " if r.parameters else ""
    return (f"{r.name} (round {r.round}): {size}{r.tokens_per_s:,.0f} tokens/s over {r.windows_used} windows "
            f"(mean of all {r.mean_tokens_per_s:,.0f}); windows: tokens/s (other load): {windows}")


def format_text_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [HEADER, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(rows: list[list[str]], *, facts: dict[str, str], command: str, setup: list[str],
                    details: list[str], commands: list[str], interval: int, repeats: int,
                    alternate: int = 1) -> str:
    table = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    table += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join([
        "# CPU training throughput: bigseq vs fairseq-train vs HF Trainer", "",
        "Same model, same binarized data, side by side (written by `benchmarks/cpu_vs_peers.py`).", "",
        *[f"- {k}: {v}" for k, v in facts.items()], "",
        "Command:", "", "```", command, "```", "",
        *table, "",
        f"tokens/s: the median over windows of {interval} updates (after the warmup) of updates x tokens per "
        "update / seconds between the log lines that close the window, stamped as they arrived from the run: "
        "the same clock for every tool. The machine may be shared: windows in which other processes used "
        f"{QUIET_LOAD_CORES} cores or more are left out when at least a third of the windows (and 3) were quiet. " +
        (f"{alternate} rounds in turns: every configuration runs once per round; the table keeps each "
         "configuration's median run (all runs are listed below). " if alternate > 1 else
         f"Up to {repeats} rounds: every configuration runs in round 1; later rounds re-run only those that other "
         "processes disturbed; the table keeps each configuration's fastest run. ") +
        "\"tool's own tokens/s\": the median of the tool's logged throughput over the same "
        "windows, as a cross-check. \"other load\": mean CPU used by other processes in the windows used, "
        f"in cores (of {facts['nproc']}); anything well above 0 means the figure is depressed by sharing.", "",
        "## Setup", "", *[f"- {line}" for line in setup], "",
        "## Every run", "", *[f"- {line}" for line in details], "",
        "## Commands", "", *[f"- {line}" for line in commands], "",
    ])


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
