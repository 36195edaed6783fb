"""`bigseq convert universal` on a ~103M-parameter model: time, and what bigseq adds to DeepSpeed's output.

    python benchmarks/universal_convert.py [--dim 1024 --ffn 2816 --layers 8] [--ranks 2]

For ZeRO-2 and ZeRO-3 sources (saved by a short run on --ranks ranks): the wall time of the
conversion, the part of it spent making the folder loadable by every ZeRO stage
(bigseq/checkpoint/universal_stages.py), and the size of zero/optimizer_state.pt before and
after (for a stage-3 source DeepSpeed copies rank 0's shard of weights and Adam moments into
it; only the step and hyper-parameters are read back). Writes benchmarks/results/universal_convert.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import report  # noqa: E402  (benchmarks/report.py, beside this script)
from e2e.runner import preprocess, train  # noqa: E402

from bigseq.checkpoint import universal, universal_stages  # noqa: E402


def _mib(path: str) -> float:
    return os.path.getsize(path) / 2**20


def convert_timed(save_dir: str) -> dict:
    """Convert in this process, timing the stage-neutral rewrite inside it."""
    row: dict = {}
    original = universal_stages.make_stage_neutral

    def timed(folder: str, source_stage: int) -> None:
        row["before_mib"] = _mib(os.path.join(folder, "zero", "optimizer_state.pt"))
        start = time.perf_counter()
        original(folder, source_stage)
        row["neutral_s"] = time.perf_counter() - start
        row["after_mib"] = _mib(os.path.join(folder, "zero", "optimizer_state.pt"))

    universal.universal_stages.make_stage_neutral = timed
    try:
        start = time.perf_counter()
        universal.convert_to_universal(save_dir)
        row["total_s"] = time.perf_counter() - start
    finally:
        universal.universal_stages.make_stage_neutral = original
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_llama_size_args(parser)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "universal_convert.md"))
    args = parser.parse_args()
    model = [*report.llama_flags(args.dim, args.ffn, args.layers), "--disable-validation", "--max-update", "1"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = preprocess(os.path.join(tmp, "raw"), os.path.join(tmp, "data-bin"))
        for stage in (2, 3):
            save = os.path.join(tmp, f"zero{stage}")
            train(data, [*model, "--zero-stage", str(stage), "--save-dir", save], nproc=args.ranks,
                  launcher="deepspeed", timeout=1200)
            size = sum(f.stat().st_size for f in Path(save, "checkpoint_1").iterdir()) / 2**20
            rows.append({"stage": stage, "ckpt_mib": size, **convert_timed(save)})
            print(rows[-1], flush=True)
    params = args.layers * (4 * args.dim**2 + 3 * args.dim * args.ffn + 2 * args.dim) + args.dim
    table = ["| source | checkpoint (MiB) | convert (s) | of which stage-neutral layout (s) | share | "
             "zero/optimizer_state.pt before -> after (MiB) |", "|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| ZeRO-{r['stage']} | {r['ckpt_mib']:.0f} | {r['total_s']:.1f} | {r['neutral_s']:.1f} | "
                     f"{r['neutral_s'] / r['total_s']:.0%} | {r['before_mib']:.1f} -> {r['after_mib']:.3f} |")
    report.write(
        args.out, "`bigseq convert universal`: time and the stage-neutral layout (CPU)",
        f"Llama-style model {args.layers} x {args.dim} (ffn {args.ffn}), about {params / 1e6:.0f}M parameters "
        f"(fp32), saved by {args.ranks} ranks after one update.",
        f"python benchmarks/universal_convert.py --dim {args.dim} --ffn {args.ffn} --layers {args.layers} "
        f"--ranks {args.ranks}", table,
        "for a ZeRO-1/2 source bigseq only links the model-states file under the stage-3 name "
        "and adds the step to the global optimizer state. For a ZeRO-3 source it also rewrites every "
        "per-parameter file into the shaped form stages 1-2 (and `bigseq generate`/`convert to-*`) read "
        "and writes each parameter's step, and drops the copy of rank 0's shard DeepSpeed puts into "
        "optimizer_state.pt (weights and both Adam moments: it grows with the model; only the step and "
        "hyper-parameters are read back).")

if __name__ == "__main__":
    main()
