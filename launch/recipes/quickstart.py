"""`make quickstart`: corpus -> tokenizer -> binarized data -> train -> validate -> sample, on CPU.

The corpus is the running interpreter's own standard library source files:
nothing is downloaded. Prints the validation perplexity next to the unigram
baseline (a model that ignores context), and a sampled continuation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from bigseq.cli import eval_lm  # noqa: E402
from bigseq.data.corpus import build_stdlib_corpus  # noqa: E402
from bigseq.data.unigram import unigram_perplexity  # noqa: E402
from bigseq.distributed import name_accelerator  # noqa: E402
from bigseq.distributed.cpu_features import describe_cpu, fastest_cpu_precision  # noqa: E402
from bigseq.errors import BigseqError  # noqa: E402
from bigseq.logging.plot import plot_runs  # noqa: E402

WORK = os.path.join(ROOT, "quickstart")
PROMPT = "def read_config(path):\n    "


def bigseq(*args: str) -> None:
    cmd = [sys.executable, "-m", "bigseq.cli.main", *args]
    print("\n$ bigseq " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def main() -> None:
    name_accelerator()  # eval-lm runs in this process
    t0 = time.time()
    raw, data = os.path.join(WORK, "raw"), os.path.join(WORK, "data")
    corpus = build_stdlib_corpus(raw)
    train_txt, valid_txt = corpus.train_path, corpus.valid_path
    bigseq("preprocess", "--trainpref", train_txt, "--validpref", valid_txt, "--destdir", data,
           "--vocab-size", "4096", "--workers", "2")
    # bf16 only where this CPU's bf16 matmuls beat its fp32 ones (measured): AMX yes, AVX512-BF16 alone no
    precision = fastest_cpu_precision()
    print(f"\nprecision {precision}: the faster one on this CPU ({describe_cpu()})", flush=True)
    log = os.path.join(WORK, "train_log.jsonl")
    bigseq("train", data, "--config", "launch/recipes/quickstart.yaml", "--precision", precision, "--log-file", log)
    print("\n$ bigseq eval-lm quickstart/checkpoints --gen-subset valid", flush=True)
    scores = eval_lm.main([os.path.join(WORK, "checkpoints"), "--gen-subset", "valid", "--log-format", "none"])
    bigseq("generate", os.path.join(WORK, "checkpoints"), "--prompt", PROMPT, "--max-new-tokens", "60",
           "--sampling", "--temperature", "0.8", "--sampling-topk", "20", "--seed", "1")
    baseline = unigram_perplexity(data, "train", "valid")
    print(f"\nvalidation perplexity: {scores['ppl']:.2f}  (unigram baseline, a model that ignores context: "
          f"{baseline:.1f}; {baseline / scores['ppl']:.0f}x lower)")
    print(f"quickstart wall time: {time.time() - t0:.0f} s")
    curves = os.path.join(WORK, "curves.png")  # beside quickstart/checkpoints
    try:
        plot_runs([log], curves, names=["quickstart"])
        print(f"training curves: {os.path.relpath(curves, ROOT)} (bigseq plot {os.path.relpath(log, ROOT)})")
    except BigseqError as e:
        print(f"no training curves: {e}")


if __name__ == "__main__":
    main()
