"""Per-update losses of a fixed set of reference runs, to the last bit: a refactor that claims
"same numbers" records them before, reruns after, and compares.

    python benchmarks/loss_fingerprint.py record before.json
    python benchmarks/loss_fingerprint.py compare before.json      # reruns, exits 1 on any difference

Runs (tiny corpus, tests/e2e/runner.py's settings): llama_tiny and gpt2_tiny on 1 rank in fp32
for 20 updates; llama_tiny under ZeRO-3 on 2 ranks; a 2-stage pipeline; optionally (--quickstart)
`make quickstart`'s validation perplexity.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.e2e.runner import preprocess, train, train_losses  # noqa: E402

RUNS = {
    "llama_tiny_1rank": (1, ["--arch", "llama_tiny", "--max-update", "20"]),
    "gpt2_tiny_1rank": (1, ["--arch", "gpt2_tiny", "--max-update", "20"]),
    "llama_tiny_zero3_2ranks": (2, ["--arch", "llama_tiny", "--max-update", "8", "--zero-stage", "3"]),
    "gpt2_tiny_pipeline2": (2, ["--arch", "gpt2_tiny", "--max-update", "6", "--update-freq", "2",
                                "--pipeline-parallel-size", "2", "--clip-norm", "1.0"]),
}


def record(quickstart: bool) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = preprocess(os.path.join(tmp, "raw"), os.path.join(tmp, "data-bin"))
        for name, (nproc, args) in RUNS.items():
            log = os.path.join(tmp, f"{name}.jsonl")
            train(data, [*args, "--no-save"], nproc=nproc, launcher="deepspeed" if nproc > 1 else "bigseq",
                  log_file=log, timeout=900)
            out[name] = {str(k): repr(v) for k, v in sorted(train_losses(log).items())}
            print(name, out[name], flush=True)
    if quickstart:
        proc = subprocess.run([sys.executable, "launch/recipes/quickstart.py"], cwd=ROOT, capture_output=True,
                              text=True, check=True)
        out["quickstart_ppl"] = re.search(r"validation perplexity: (\S+)", proc.stdout).group(1)
        print("quickstart_ppl", out["quickstart_ppl"], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["record", "compare"])
    parser.add_argument("file")
    parser.add_argument("--quickstart", action="store_true", help="also run make quickstart's recipe")
    args = parser.parse_args()
    got = record(args.quickstart)
    if args.action == "record":
        with open(args.file, "w") as f:
            json.dump(got, f, indent=1)
        return
    with open(args.file) as f:
        want = json.load(f)
    bad = [k for k in got if want.get(k) != got[k]]
    print("identical" if not bad else f"DIFFERENT: {bad}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
