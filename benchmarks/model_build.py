"""Time to build a model on the CPU: PyTorch's default init + two fills by name (how `bigseq train`
built until now) vs no default init + one fill (now), same process, side by side.

    python benchmarks/model_build.py [--archs llama_125m gpt2_medium llama_1b] [--repeats 2] [--threads 2]

Both give the same weights (tests/models/test_build_without_default_init.py). Best of --repeats.
Writes benchmarks/results/model_build.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import report  # noqa: E402  (benchmarks/report.py, beside this script)

import bigseq.models  # noqa: E402,F401
from bigseq import registry  # noqa: E402

VOCAB = 32000


def before(cls, cfg) -> float:
    start = time.perf_counter()
    model = cls(cfg, pad_idx=1)  # every nn.Linear / nn.Embedding runs its own default init
    model.reset_parameters(1)  # the model's build filled from seed 1 ...
    model.reset_parameters(2)  # ... and the trainer again from --seed
    return time.perf_counter() - start


def now(cls, cfg) -> float:
    start = time.perf_counter()
    cls.build(cfg, SimpleNamespace(vocab_size=VOCAB, pad_idx=1), seed=2)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["llama_125m", "gpt2_medium", "llama_1b"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "model_build.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for arch in args.archs:
        model_name, make = registry.ARCH_REGISTRY.get(arch)
        cls = registry.MODEL_REGISTRY.get(model_name).cls
        cfg = dataclasses.replace(make(), vocab_size=VOCAB)
        times = {"before": [], "now": []}
        for _ in range(args.repeats):
            for label, fn in (("before", before), ("now", now)):
                times[label].append(fn(cls, cfg))
                gc.collect()
        with torch.device("meta"):
            params = sum(p.numel() for p in cls(cfg, pad_idx=1).parameters())
        rows.append((arch, params, min(times["before"]), min(times["now"])))
        print(rows[-1], flush=True)
    table = ["| arch | parameters | before (s) | now (s) | speed-up |", "|---|---:|---:|---:|---:|"]
    table += [f"| {arch} | {params:,} | {old:.1f} | {new:.1f} | {old / new:.2f}x |" for arch, params, old, new in rows]
    report.write(
        args.out, "Model build time on the CPU: default init + two fills vs one fill",
        f"torch {torch.__version__} on {args.threads} threads, fp32, vocabulary {VOCAB}, best of {args.repeats}.",
        f"python benchmarks/model_build.py --archs {' '.join(args.archs)} --repeats {args.repeats} "
        f"--threads {args.threads}", table,
        "every parameter is filled from (seed, name) anyway, so PyTorch's per-module default "
        "init (kaiming-uniform for each Linear, normal for the embedding) was wasted, and so was the first "
        "fill (the model's build used seed 1, the trainer then filled again from --seed). What is left is "
        "one fill, drawing every value once, into memory touched for the first time. The default init is "
        "skipped by making torch.nn.init's initializers no-ops while the modules are made (as transformers' "
        "no_init_weights does), so it works inside `deepspeed.zero.Init` (ZeRO-3) too.")

if __name__ == "__main__":
    main()
