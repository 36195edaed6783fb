"""CPU training throughput of bigseq vs fairseq-train vs the HF Trainer: same model, same data.

Also on 2 ranks of DeepSpeed ZeRO-2 (the set-up a user would pick for multi-rank training): HF Trainer
with `deepspeed=` against `bigseq train --zero-stage 2`, both under the `deepspeed` launcher, same
global batch, each rank with half the cores.

    .venv/bin/python benchmarks/cpu_vs_peers.py            # all runs, ~5 min after a one-time setup
    .venv/bin/python benchmarks/cpu_vs_peers.py --only bigseq   # prints its rows, writes no file

Model: fairseq `transformer_lm`, 4 layers, dim 256, 4 heads, FFN 1024, shared input/output embeddings,
GPT-2 style (learned positions, pre-norm, GELU), dropout 0.1; 256 tokens per sample, batch 8, Adam,
lr 5e-4. Data: this interpreter's stdlib sources, byte-level BPE, binarized once by fairseq-preprocess;
all three tools read the same token ids. The table goes to benchmarks/results/cpu_vs_peers.md.
fairseq-train runs from its own venv (benchmarks/.peer-venvs/fairseq, created on first use).
On a shared machine other processes' CPU use is measured per timed window and disturbed windows
are left out (see benchmarks/peers/measure.py); disturbed runs are repeated while time allows, or
with --alternate N every run goes N times in turns and the table keeps each one's median.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shlex
import socket
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from peers.corpus import build_data  # noqa: E402
from peers.cpu_load import wait_until_quiet  # noqa: E402
from peers.fairseq_venv import ensure_fairseq_venv, installed_versions  # noqa: E402
from peers.measure import RunResult, run_and_measure  # noqa: E402
from peers.report import (  # noqa: E402
    best_per_run,
    describe_run,
    format_markdown,
    format_text_table,
    machine_facts,
    median_per_run,
    table_rows,
    write_atomically,
)

BASELINE = "fairseq-train fp32"
TOKENS_PER_UPDATE = 8 * 256  # batch 8 x 256 tokens per sample
TOOLS = ("fairseq", "hf", "bigseq", "hf-zero2", "bigseq-zero2")
MODEL_FLAGS = ["--decoder-layers", "4", "--decoder-embed-dim", "256", "--decoder-attention-heads", "4",
               "--decoder-ffn-embed-dim", "1024", "--share-decoder-input-output-embed", "--dropout", "0.1"]

# fairseq's dataclass defaults keep input/output dims at 512 unless given, which would add 512-wide
# embeddings and two projections; the rest makes it the GPT-2-style block the other tools run
FAIRSEQ_GPT2_STYLE_FLAGS = ["--decoder-input-dim", "256", "--decoder-output-dim", "256", "--decoder-learned-pos",
                            "--decoder-normalize-before", "--activation-fn", "gelu"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    parser.add_argument("--warmup", type=int, default=10, help="updates run before timing starts")
    parser.add_argument("--updates", type=int, default=50, help="timed updates per run")
    parser.add_argument("--log-interval", type=int, default=5, help="log interval of fairseq-train and bigseq")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds; after the first, only runs that other processes disturbed are repeated")
    parser.add_argument("--alternate", type=int, default=1,
                        help="run every configuration this many times in turns and keep each one's median run "
                             "(the machine's speed drifts between runs more than the tools differ); "
                             "replaces --repeats")
    parser.add_argument("--budget-min", type=float, default=10, help="start no repeat after this many minutes")
    parser.add_argument("--quiet-wait", type=float, default=20,
                        help="before each run, wait up to this many seconds for other processes to go idle")
    parser.add_argument("--timeout", type=float, default=300, help="seconds before a run is killed")
    parser.add_argument("--corpus-bytes", type=int, default=3_000_000, help="stdlib source bytes in the corpus")
    parser.add_argument("--vocab-size", type=int, default=8192, help="byte-level BPE vocabulary size")
    parser.add_argument("--work-dir", type=Path, default=BENCH_DIR / ".peer-work")
    parser.add_argument("--venv-dir", type=Path, default=BENCH_DIR / ".peer-venvs" / "fairseq")
    parser.add_argument("--output", type=Path, default=None,
                        help="results file (default: benchmarks/results/cpu_vs_peers.md, written by full runs only)")
    args = parser.parse_args()
    args.tools = [t.strip() for t in args.only.split(",") if t.strip()]
    if args.output is None and set(args.tools) == set(TOOLS):
        args.output = BENCH_DIR / "results" / "cpu_vs_peers.md"  # a partial run must not replace the full table
    unknown = set(args.tools) - set(TOOLS)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {','.join(TOOLS)}")
    return args


def planned_runs(args, fairseq_bin: Path, data_dir: Path, vocab: int) -> list[tuple[str, list[str], dict]]:
    """(name, command, extra env) for every selected run, in table order."""
    max_update = str(args.warmup + args.updates)
    interval = str(args.log_interval)
    common = ["--task", "language_modeling", "--tokens-per-sample", "256", "--sample-break-mode", "none",
              "--batch-size", "8", "--optimizer", "adam", "--lr", "5e-4", "--max-update", max_update,
              "--log-format", "json", "--log-interval", interval, "--no-save", "--disable-validation",
              "--seed", "1"]
    runs = []
    if "fairseq" in args.tools:
        runs.append((BASELINE, [str(fairseq_bin / "fairseq-train"), str(data_dir), "--arch", "transformer_lm",
                                *MODEL_FLAGS, *FAIRSEQ_GPT2_STYLE_FLAGS,
                                *common, "--cpu",
                                "--save-dir", str(args.work_dir / "fairseq-ckpt")], {}))
    hf = [str(BENCH_DIR / "peers" / "hf_trainer_run.py"), str(data_dir), "--max-update", max_update,
          "--vocab-size", str(vocab)]
    if "hf" in args.tools:
        runs += [("HF Trainer fp32", [sys.executable, *hf], {}),
                 ("HF Trainer bf16", [sys.executable, *hf, "--bf16"], {})]
    if "bigseq" in args.tools:
        bigseq = Path(sys.executable).parent / "bigseq"
        for precision in ("fp32", "bf16"):
            runs.append((f"bigseq {precision}", [str(bigseq), "train", str(data_dir), "--arch", "gpt2_tiny",
                                                 *MODEL_FLAGS, *common, "--precision", precision,
                                                 "--save-dir", str(args.work_dir / f"bigseq-ckpt-{precision}")], {}))
    # 2 ranks under the deepspeed launcher, half the cores each (the launcher would give each rank all of them)
    two_ranks = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // 2))}
    for precision in ("fp32", "bf16"):
        if "hf-zero2" in args.tools:
            runs.append((f"HF Trainer + DeepSpeed ZeRO-2, 2 ranks {precision}",
                         [*deepspeed_launcher(), *hf, "--zero-stage", "2",
                          *(["--bf16"] if precision == "bf16" else [])], two_ranks))
        if "bigseq-zero2" in args.tools:
            runs.append((f"bigseq ZeRO-2, 2 ranks {precision}",
                         [*deepspeed_launcher(), str(REPO_ROOT / "launch" / "train.py"), str(data_dir), "--arch",
                          "gpt2_tiny", *MODEL_FLAGS, *common, "--precision", precision, "--zero-stage", "2",
                          "--save-dir", str(args.work_dir / f"bigseq-zero2-ckpt-{precision}")], two_ranks))
    return runs


def deepspeed_launcher() -> list[str]:
    with socket.socket() as s:  # a free port per run: a killed run's launcher may hold its port a while
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "2", "--master_port", str(port)]


def shown(command: list[str]) -> str:
    """A command line with repository paths made relative, as a reader would type it from the repo root."""
    return shlex.join(command).replace(str(REPO_ROOT) + "/", "")


def run_rounds(args, runs: list[tuple[str, list[str], dict]]) -> list[RunResult]:
    """Round 1 runs everything; later rounds re-run only what other processes disturbed, within the budget."""
    results: list[RunResult] = []
    started = time.monotonic()
    alternating = args.alternate > 1
    for round_number in range(1, (args.alternate if alternating else args.repeats) + 1):
        for name, command, env in runs:
            if round_number > 1 and not alternating:
                if any(r.name == name and (r.all_quiet or r.tokens_per_s is None) for r in results):
                    continue  # undisturbed already, or failed (a failure repeats)
                if time.monotonic() - started > args.budget_min * 60:
                    print(f"[run] budget of {args.budget_min} min spent: no more repeats", flush=True)
                    return results
            wait_until_quiet(args.quiet_wait)
            log_path = args.work_dir / f"{name.replace(' ', '_')}-{round_number}.log"
            try:
                result = run_and_measure(name, command, log_path=log_path, warmup=args.warmup,
                                         log_interval=args.log_interval, tokens_per_update=TOKENS_PER_UPDATE,
                                         timeout_s=args.timeout, env=env)
            except OSError as err:  # e.g. the bigseq console script is not installed
                result = RunResult(name=name, command=command, error=str(err))
            result.round = round_number
            print(f"[run] {describe_run(result)}  (log: {shown([str(log_path)])})", flush=True)
            results.append(result)
    return results


def bf16_route_note() -> str:
    import torch

    from bigseq.kernels.cpu_bf16 import bf16_route, matmul_gflops

    speed = matmul_gflops()
    return (f"bf16 {speed['bf16']:.0f}, fp32 {speed['fp32']:.0f}, bf16 through fp32 {speed['bf16 via fp32']:.0f} "
            f"GFLOP/s on {torch.get_num_threads()} threads: route {bf16_route()}")


def setup_notes(args, data: dict) -> list[str]:
    """What was run, for the results file."""
    return [
        f"data: {data['documents']} stdlib .py files ({data['source_bytes']:,} chars), byte-level BPE "
        f"{data['bpe_vocab']} -> fairseq dictionary {data['dictionary_size']} (4 specials, padded to 8); "
        f"{data['train_tokens']:,} train tokens, `fairseq-preprocess --only-source --dataset-impl mmap`",
        "model: 4 layers, dim 256, 4 heads, FFN 1024, tied embeddings, learned positions, pre-norm, GELU, "
        "dropout 0.1 (attention dropout 0); 256 tokens x batch 8 = 2,048 tokens per update; Adam, lr 5e-4, "
        "no gradient clipping",
        f"fairseq-train: `--arch transformer_lm` plus `{' '.join(FAIRSEQ_GPT2_STYLE_FLAGS)}` so it is the "
        "GPT-2-style model the others run (without the two dims fairseq builds 512-wide embeddings and two "
        "projections: 7.4M parameters instead of 5.2M); `--cpu`, fp32, its default 1 data-loader worker; "
        "fairseq's `--bf16` is not run: with `--cpu` it takes the TPU path and fails (`xm.xla_device`)",
        "HF Trainer: GPT2LMHeadModel from a GPT2Config (SDPA attention), its default optimizer (torch's fused "
        "AdamW) with weight decay 0 (= Adam), constant LR, "
        "max_grad_norm 0, `use_cpu=True`, `bf16=True` for the bf16 row (CPU autocast)",
        "bigseq: `bigseq train --arch gpt2_tiny` with the same model flags, `--precision fp32|bf16`; its bf16 "
        "matmuls on a CPU whose fp32 kernels are faster run on fp32 copies of the bf16 operands (measured per "
        f"process; here {bf16_route_note()})",
        "2 ranks: both under `deepspeed --num_gpus 2` (gloo), DeepSpeed ZeRO-2, the same global batch of 8 (4 per "
        "rank), OMP_NUM_THREADS = half the cores per rank; HF Trainer gets `deepspeed=` a ZeRO-2 config whose "
        "'auto' values it fills (its own AdamW, `zero_allow_untested_optimizer`); bigseq `--zero-stage 2`, whose "
        "gradient all-reduces go through DeepSpeed's shared-memory kernel instead of gloo (all ranks local)",
        f"timing: {args.warmup} warmup updates, then {args.updates} timed; fairseq-train/bigseq log every "
        f"{args.log_interval} updates, the HF runner prints every update; torch's default threads (one per core)",
    ]


def main() -> None:
    args = parse_args()
    facts = machine_facts()
    fairseq_bin = ensure_fairseq_venv(args.venv_dir)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    (args.work_dir / ".gitignore").write_text("*\n")
    data = build_data(args.work_dir, fairseq_bin / "fairseq-preprocess", max_bytes=args.corpus_bytes,
                      vocab_size=args.vocab_size)
    data_dir = args.work_dir / "data-bin"
    runs = planned_runs(args, fairseq_bin, data_dir, data["dictionary_size"])
    results = run_rounds(args, runs)

    rows = table_rows(median_per_run(results) if args.alternate > 1 else best_per_run(results), BASELINE)
    print("\n" + format_text_table(rows))
    facts["torch (HF Trainer, bigseq)"] = importlib.metadata.version("torch")
    facts["transformers"] = importlib.metadata.version("transformers")
    facts["fairseq venv"] = installed_versions(fairseq_bin)
    setup = setup_notes(args, data)
    details = [describe_run(r) for r in results]
    commands = [f"{name}: `{shown([f'{k}={v}' for k, v in env.items()] + command)}`" for name, command, env in runs]
    command = shown([".venv/bin/python", "benchmarks/cpu_vs_peers.py", *sys.argv[1:]])
    if args.output is None:
        print("\n(partial run: results file not written; pass --output FILE to write one)")
        return
    write_atomically(args.output, format_markdown(rows, facts=facts, command=command, setup=setup, details=details,
                                                   commands=commands, interval=args.log_interval,
                                                   repeats=args.repeats, alternate=args.alternate))
    print(f"\nwrote {shown([str(args.output)])}")

if __name__ == "__main__":
    main()
