"""Peak memory per process: one plain process vs ZeRO-3 (with and without CPU offload) on 2 and 4 ranks.

    python benchmarks/zero3_memory.py [--dim 1024 --ffn 2816 --layers 8] [--updates 2]

Each rank runs in its own memory cgroup (needs root and cgroup v1 or v2 memory); the peak is
the cgroup's high-water mark: resident memory plus the shared memory it touched. Same model,
tokens and optimizer (AdamW) in every row. Writes benchmarks/results/zero3_memory.md.
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
from e2e.runner import TRAIN_PY, preprocess  # noqa: E402

OFFLOAD = ["--deepspeed-config", str(ROOT / "ds_configs" / "zero3_offload.json")]
KEEP = {"BIGSEQ_CPU_ALLOCATOR": "keep"}  # what ZeRO 0-2 runs use: freed memory stays in the process
SETUPS = [  # (label, ranks, flags, environment)
    ("1 process, no ZeRO", 1, ["--zero-stage", "0"], {}),
    ("ZeRO-3, 2 ranks", 2, ["--zero-stage", "3"], {}),
    ("ZeRO-3 + CPU offload (zero3_offload.json), 2 ranks", 2, OFFLOAD, {}),
    ("ZeRO-3 + CPU offload (zero3_offload.json), 4 ranks", 4, OFFLOAD, {}),
    ("same, BIGSEQ_CPU_ALLOCATOR=keep", 4, OFFLOAD, KEEP),
    ("same, DeepSpeed's default buckets and live-parameter limits, allocator keep", 4,
     ["--zero-stage", "3", "--offload-optimizer", "cpu", "--deepspeed-config", "{raw}"], KEEP),
]
# DeepSpeed's own defaults for comparison: a template with numbers, so nothing is filled in
RAW_TEMPLATE = {"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"},
                                      "reduce_bucket_size": int(5e8), "stage3_prefetch_bucket_size": int(5e7),
                                      "stage3_param_persistence_threshold": int(1e5)}}


def measure(data: str, flags: list[str], ranks: int, updates: int, tmp: str,
            env: dict) -> tuple[list[int], float, int, float]:
    cmd = [sys.executable, str(TRAIN_PY), data, *flags, "--tokens-per-sample", "32", "--batch-size", str(2 * ranks),
           "--max-update", str(updates), "--no-save", "--disable-validation", "--log-format", "json",
           "--log-interval", "1"]
    start = time.monotonic()
    results = run_capped_ranks(cmd, ranks, None, tmp, env=env)
    wall = time.monotonic() - start
    for r in results:
        if r["returncode"] != 0:
            raise SystemExit(f"error: run failed ({' '.join(cmd)}):\n{r['output'][-3000:]}")
    rates = [json.loads(line)["tokens_per_s"] for line in results[0]["output"].splitlines()
             if line.startswith('{"tag": "train"')][1:]  # the first update includes warm-up
    params = next(int(line.split(": ")[1].split()[0].replace(",", "")) for line in results[0]["output"].splitlines()
                  if line.startswith("bigseq | model"))
    return [r["peak_bytes"] for r in results], wall, params, sorted(rates)[len(rates) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    report.add_llama_size_args(parser)
    parser.add_argument("--updates", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "zero3_memory.md"))
    args = parser.parse_args()
    if reason := unavailable_reason():
        raise SystemExit(f"error: {reason}")
    rows, base, params = [], None, 0
    with tempfile.TemporaryDirectory() as tmp:
        data = preprocess(os.path.join(tmp, "raw"), os.path.join(tmp, "data-bin"))
        raw = os.path.join(tmp, "deepspeed_defaults.json")
        Path(raw).write_text(json.dumps(RAW_TEMPLATE))
        for label, ranks, flags, env in SETUPS:
            flags = [raw if f == "{raw}" else f for f in flags]
            model = report.llama_flags(args.dim, args.ffn, args.layers)
            peaks, wall, params, rate = measure(data, model + flags, ranks, args.updates, tmp, env)
            peak = max(peaks)
            base = base or peak
            rows.append(f"| {label} | {ranks} | {peak / 2**30:.2f} | {peak / base:.2f}x | {rate:,.0f} | {wall:.0f} |")
            print(rows[-1], flush=True)
    cmd = f"python benchmarks/zero3_memory.py --dim {args.dim} --ffn {args.ffn} --layers {args.layers} " \
          f"--updates {args.updates}"
    report.write(
        args.out, "Peak memory per process: plain vs ZeRO-3 (CPU, gloo)",
        f"Llama-style model, {params:,} parameters ({args.layers} x {args.dim}, "
        f"ffn {args.ffn}), fp32, AdamW, {args.updates} updates of 2 x 32 tokens per rank; wall includes start-up. "
        "Peak = the highest of the ranks' memory-cgroup high-water marks (resident + touched shared memory, incl. "
        "DeepSpeed's 66 MiB shared-memory all-reduce buffer and the ~0.3 GiB every torch + DeepSpeed "
        "process holds). Full training state of this model (fp32 weights, grads, Adam moments): "
        f"{16 * params / 2**30:.2f} GiB.", cmd,
        ["| setup | ranks | peak per process (GiB) | vs 1 process | tokens/s (median update) | wall (s) |",
         "|---|---|---|---|---|---|", *rows],
        "ZeRO-3 shards weights, gradients and Adam moments (16 bytes per parameter) over the "
        "ranks; what stays per process is the runtime itself, one or two gathered layers and the "
        "buffers. DeepSpeed's default buckets (5e8 elements) and live-parameter limit (1e9) are sized "
        "for billion-parameter models and cost more than the sharding saves here. With "
        "BIGSEQ_CPU_ALLOCATOR=keep (what ZeRO 0-2 runs use) each rank keeps the memory its gathered "
        "layers used; the default for ZeRO-3, return, gives it back, at some speed. Several ranks "
        "share these cores, so tokens/s compares rows of equal rank count only.")

if __name__ == "__main__":
    main()
