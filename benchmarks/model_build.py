"""Time to build a model on the CPU: PyTorch's default init + two fills by name (how `bigseq train`
built until now) vs no default init + one fill (now), same process, side by side.

    python benchmarks/model_build.py [--archs llama_125m gpt2_medium llama_1b] [--repeats 2] [--threads 2]
                                     [--zero3-arch llama_1b] [--zero3-worlds 8 64]

Both give the same weights (tests/models/test_build_without_default_init.py). Best of --repeats.
A second table times what one ZeRO-3 rank draws to fill its slice of every parameter: each parameter
drawn whole (one draw per parameter, as before init blocks) vs only the init blocks its slice lies in.
Writes benchmarks/results/model_build.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import math
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
from bigseq.models.transformer_lm.model import init_rules  # noqa: E402
from bigseq.modules import init  # noqa: E402

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


def zero3_fill(cls, cfg, world: int) -> tuple[int, float, int, float]:
    """(elements, seconds) one rank draws at start-up: every parameter whole vs only its slice's blocks."""
    with torch.device("meta"):
        shapes = [(name, p.numel()) for name, p in cls(cfg, pad_idx=1).named_parameters()]
    drawn = []  # elements per draw

    def counted(initializer):
        return lambda numel, gen: drawn.append(numel) or initializer(numel, gen)
    rules = [(pattern, counted(initializer)) for pattern, initializer in init_rules(cfg)]
    start = time.perf_counter()
    for name, numel in shapes:
        init.initializer_for(name, rules)(numel, torch.Generator().manual_seed(init.stable_seed(2, name)))
    whole, whole_elements = time.perf_counter() - start, sum(drawn)
    drawn.clear()
    rank, start = world // 2, time.perf_counter()  # a middle rank: its slices start inside blocks
    for name, numel in shapes:
        size = math.ceil(numel / world)  # DeepSpeed's slice: rank r holds [r * size, (r + 1) * size)
        init.init_slice(name, numel, rank * size, max(0, min(size, numel - rank * size)), 2, rules)
    return whole_elements, whole, sum(drawn), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["llama_125m", "gpt2_medium", "llama_1b"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--zero3-arch", default="llama_1b")
    parser.add_argument("--zero3-worlds", nargs="+", type=int, default=[8, 64])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "model_build.md"))
    args = parser.parse_args()
    for arch in {*args.archs, args.zero3_arch}:
        if arch not in registry.ARCH_REGISTRY:
            parser.error(f"unknown architecture '{arch}'; one of {', '.join(registry.ARCH_REGISTRY.names())}")
    if min(args.zero3_worlds) < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--zero3-worlds, --repeats and --threads must be >= 1")
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
    model_name, make = registry.ARCH_REGISTRY.get(args.zero3_arch)
    cls = registry.MODEL_REGISTRY.get(model_name).cls
    cfg = dataclasses.replace(make(), vocab_size=VOCAB)
    zero3 = ["", f"ZeRO-3, {args.zero3_arch}: what rank world/2 draws to fill its slice of every parameter", "",
             "| world | whole parameters: elements | s | init blocks of its slice: elements | s | speed-up |",
             "|---:|---:|---:|---:|---:|---:|"]
    for world in args.zero3_worlds:
        total, whole, sliced, took = zero3_fill(cls, cfg, world)
        zero3.append(f"| {world} | {total:,} | {whole:.2f} | {sliced:,} | {took:.2f} | {whole / took:.1f}x |")
        print(zero3[-1], flush=True)
    report.write(
        args.out, "Model build time on the CPU: default init + two fills vs one fill",
        f"torch {torch.__version__} on {args.threads} threads, fp32, vocabulary {VOCAB}, best of {args.repeats}.",
        f"python benchmarks/model_build.py --archs {' '.join(args.archs)} --repeats {args.repeats} "
        f"--threads {args.threads} --zero3-arch {args.zero3_arch} --zero3-worlds "
        f"{' '.join(map(str, args.zero3_worlds))}", table + zero3,
        "every parameter is filled from (seed, name) anyway, so PyTorch's per-module default "
        "init (kaiming-uniform for each Linear, normal for the embedding) was wasted, and so was the first "
        "fill (the model's build used seed 1, the trainer then filled again from --seed). What is left is "
        "one fill, drawing every value once, into memory touched for the first time. The default init is "
        "skipped by making torch.nn.init's initializers no-ops while the modules are made (as transformers' "
        "no_init_weights does), so it works inside `deepspeed.zero.Init` (ZeRO-3) too. Under ZeRO-3 every "
        "rank used to draw every parameter whole and keep its slice; parameters are now drawn in blocks of "
        f"{init.INIT_BLOCK:,} elements, each from its own (seed, name, block) generator, so a rank draws only "
        "the blocks its slice lies in: about 1/world of the model plus at most two partial blocks per "
        "parameter, with the unsharded model's values (tests/e2e/test_zero3_build.py).")

if __name__ == "__main__":
    main()
