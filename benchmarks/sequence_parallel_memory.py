"""Longest sequence that trains under a per-process memory cap, for --sequence-parallel-size 1, 2, 4
with and without --mlp-chunks (CPU, gloo, one memory cgroup per rank).

    python benchmarks/sequence_parallel_memory.py [--cap-gib 1.0] [--dim 256 --ffn 704 --layers 2]
        [--setups 1:1,1:8,2:1,2:8,4:1,4:8]   # SP:--mlp-chunks pairs

Per setup: two uncapped runs at short lengths give the peak per process as a line in T (activations
grow linearly with the tokens; SDPA keeps no T x T scores); its crossing of the cap is the first
guess, and capped runs then step it (by an eighth) until T trains under the cap and the next step
is OOM-killed by the kernel. Every run is 2 updates of one sequence (the second update holds Adam's
state and the activations at once), ZeRO stage 0 so the model states are the same in every row and
only what sequence parallelism divides differs. Writes benchmarks/results/sequence_parallel_memory.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import report  # noqa: E402  (benchmarks/report.py, beside this script)
from e2e.memory_cgroup import run_capped_ranks, unavailable_reason  # noqa: E402
from e2e.runner import TRAIN_PY, cli, write_corpus  # noqa: E402

GIB, MIB = 2**30, 2**20
UPDATES = 2


def run(data: str, model: list[str], sp: int, chunks: int, tokens: int, cap: int | None, tmp: str) -> dict:
    """One 2-update run of SP ranks at `tokens`: {'ok', 'peak' (max over ranks), 'tokens_per_s', 'output'}."""
    cmd = [sys.executable, str(TRAIN_PY), data, *model, "--tokens-per-sample", str(tokens), "--batch-size", "1",
           "--sample-break-mode", "none", "--max-update", str(UPDATES), "--lr", "0.001", "--zero-stage", "0",
           "--sequence-parallel-size", str(sp), "--mlp-chunks", str(chunks), "--fused-linear-ce",
           "--no-save", "--disable-validation", "--log-format", "json", "--log-interval", "1",
           "--max-target-positions", str(max(tokens, 1024))]
    results = run_capped_ranks(cmd, sp, cap, tmp, timeout=900)
    ok = all(r["returncode"] == 0 for r in results)
    killed = any(r["oom_kills"] for r in results)
    if not ok and not killed:
        raise SystemExit(f"error: a run failed without hitting the cap ({' '.join(cmd)}):\n"
                         f"{next(r['output'] for r in results if r['returncode'])[-3000:]}")
    rates = [json.loads(line)["tokens_per_s"] for line in results[0]["output"].splitlines()
             if line.startswith('{"tag": "train"')]
    return {"ok": ok, "peak": max(r["peak_bytes"] for r in results), "tokens_per_s": rates[-1] if rates else 0.0}


def longest(data: str, model: list[str], sp: int, chunks: int, cap: int, tmp: str, log) -> dict:
    unit = 128 * sp  # lengths stay multiples of the SP degree (and round)
    short, longer = 512 * sp, 2048 * sp
    a, b = (run(data, model, sp, chunks, t, None, tmp) for t in (short, longer))
    per_token = (b["peak"] - a["peak"]) / (longer - short)
    guess = max(unit, int((short + (cap - a["peak"]) / per_token) // unit * unit))
    log(f"  SP={sp} chunks={chunks}: {per_token / 1024:.1f} KiB per token, first guess T={guess:,}")
    step = lambda t: max(unit, t // 8 // unit * unit)  # noqa: E731  (an eighth of T, in whole units)

    def capped(t: int) -> dict:
        r = run(data, model, sp, chunks, t, cap, tmp)
        log(f"    T={t:,}: {'trains' if r['ok'] else 'OOM-killed'} (peak {r['peak'] / GIB:.2f} GiB)")
        return r

    killed, t = 0, guess
    while not (r := capped(t))["ok"]:  # down until it trains
        killed, t = t, t - step(t)
        if t < unit:
            raise SystemExit(f"error: SP={sp} does not train even {unit} tokens under the cap; raise --cap-gib")
    fits, rate = t, r["tokens_per_s"]
    if not killed:  # up until the next step is killed
        while (r := capped(fits + step(fits)))["ok"]:
            fits, rate = fits + step(fits), r["tokens_per_s"]
        killed = fits + step(fits)
    return {"sp": sp, "chunks": chunks, "base": a["peak"], "per_token": per_token, "fits": fits, "killed": killed,
            "rate": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap-gib", type=float, default=1.0, help="memory cap of every process")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--ffn", type=int, default=704)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--setups", default="1:1,1:8,2:1,2:8,4:1,4:8",
                        help="SP:--mlp-chunks pairs, comma-separated (the SP=1 row of each chunk count is the 1.00x)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sequence_parallel_memory.md"))
    args = parser.parse_args()
    if reason := unavailable_reason():
        raise SystemExit(f"error: {reason}")
    cap = int(args.cap_gib * GIB)
    model = report.llama_flags(args.dim, args.ffn, args.layers)
    results = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        train, valid = write_corpus(os.path.join(tmp, "raw"), n_train=30000)
        data = os.path.join(tmp, "data-bin")
        cli("preprocess", "--trainpref", train, "--validpref", valid, "--destdir", data, "--vocab-size", "300",
            check=True)
        for setup in args.setups.split(","):
            sp, chunks = map(int, setup.split(":"))
            results.append(longest(data, model, sp, chunks, cap, tmp, lambda m: print(m, flush=True)))
            print(table_rows(results)[-1], flush=True)
    write_table(args, results, time.monotonic() - started)


def table_rows(results: list[dict]) -> list[str]:
    rows, first = [], {}
    for r in results:
        first.setdefault(r["chunks"], r["fits"])
        rows.append(f"| {r['sp']} | {r['chunks']} | {r['base'] / GIB:.2f} | {r['per_token'] / 1024:.1f} | "
                    f"**{r['fits']:,}** | {r['killed']:,} | {r['fits'] / first[r['chunks']]:.2f}x | "
                    f"{r['rate']:,.0f} |")
    return rows


def write_table(args, results: list[dict], seconds: float, note: str = "") -> None:
    cmd = (f"python benchmarks/sequence_parallel_memory.py --cap-gib {args.cap_gib} --dim {args.dim} "
           f"--ffn {args.ffn} --layers {args.layers} --setups {args.setups}")
    report.write(
        args.out, f"Longest sequence under a {args.cap_gib:g} GiB per-process memory cap, by --sequence-parallel-size",
        f"Llama-style model ({args.layers} x {args.dim}, ffn {args.ffn}, {args.dim // 64} heads), fp32, AdamW, "
        f"ZeRO-0, {UPDATES} updates of one sequence, --fused-linear-ce, SP ranks = world size (one data-parallel "
        f"replica). Each rank in its own memory cgroup capped at {args.cap_gib:g} GiB: the kernel OOM-kills a rank "
        f"past it. Base = a rank's peak at T = 512 x SP (runtime, model states, buffers); per token = the slope "
        f"of the peak between 512 x SP and 2048 x SP tokens. {seconds:.0f} s in all.{note}", cmd,
        ["| SP | --mlp-chunks | base peak per rank (GiB) | peak per token (KiB) | longest T that trains | "
         "next step, OOM-killed | vs SP=1 | tokens/s (2nd update) |",
         "|---|---|---|---|---|---|---|---|", *table_rows(results)],
        "Each of the SP ranks holds T/SP tokens of every layer, so the memory a token costs a rank falls with SP "
        "and the longest sequence grows with it; the base grows a little with the rank count (gloo and "
        "DeepSpeed's shared-memory buffers). --mlp-chunks keeps none of the feed-forward block's "
        "intermediates between forward and backward. tokens/s: several ranks share 2 cores, and attention's "
        "cost grows with T squared, so it is no speed comparison.")


if __name__ == "__main__":
    main()
