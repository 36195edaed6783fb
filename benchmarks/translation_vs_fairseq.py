"""Translation on CPU, bigseq vs fairseq side by side: training tokens/s (fp32, bf16) and beam-search sentences/s.

    .venv/bin/python benchmarks/translation_vs_fairseq.py   # -> benchmarks/results/translation_vs_fairseq.md
    .venv/bin/python benchmarks/translation_vs_fairseq.py --layers 1 --dim 64 --ffn 128 --heads 2 \\
        --train-sentences 2000 --warmup 2 --updates 8 --log-interval 2 --test-sentences 64 --out /tmp/t.md  # smoke

One synthetic bitext (word-for-word "translation" with local reordering), binarized once by fairseq-preprocess
--joined-dictionary; both tools read that data-bin. The model is fairseq's `transformer` with
--share-all-embeddings at --layers/--dim/--ffn/--heads, the same flags for `fairseq-train --arch transformer`
and `bigseq train --arch transformer`; label-smoothed cross-entropy, Adam, fixed lr, dropout 0.1, the same
--max-tokens (fairseq with --required-batch-size-multiple 1, the batches bigseq plans). Training speed: the
steady state after --warmup updates, as benchmarks/cpu_vs_peers.py measures it (peers/measure.py), in target
tokens/s. Generation: the fairseq fp32 run's checkpoint, converted by `bigseq convert from-fairseq`, translates
the test split at --beam, batch --gen-batch-size, with both tools; each tool's own "Translated N sentences
... (X sentences/s)" line. fairseq-train runs from its own venv (benchmarks/.peer-venvs/fairseq).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO_ROOT))

from peers.cpu_load import wait_until_quiet  # noqa: E402
from peers.fairseq_venv import ensure_fairseq_venv, installed_versions  # noqa: E402
from peers.measure import RunResult, run_and_measure  # noqa: E402
from peers.report import HEADER, describe_run, table_rows  # noqa: E402
from report import write  # noqa: E402

BASELINE = "fairseq-train fp32"
# fairseq 0.12's torch.load of its own checkpoints predates torch's weights_only default
FAIRSEQ_ENV = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
_TRANSLATED = re.compile(r"Translated ([\d,]+) sentences .* \(([\d.]+) sentences/s")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=3, help="encoder and decoder layers each")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=2000, help="source words (the target has as many)")
    p.add_argument("--train-sentences", type=int, default=40000)
    p.add_argument("--test-sentences", type=int, default=512)
    p.add_argument("--max-tokens", type=int, default=4096)
    p.add_argument("--warmup", type=int, default=10, help="updates run before timing starts")
    p.add_argument("--updates", type=int, default=40, help="timed updates per training run")
    p.add_argument("--log-interval", type=int, default=5)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--gen-batch-size", type=int, default=32)
    p.add_argument("--gen-repeats", type=int, default=3,
                   help="generation runs per tool, alternating, the median kept (this machine's speed drifts)")
    p.add_argument("--demo-checkpoint", type=Path, default=REPO_ROOT / "translate" / "checkpoints",
                   help="also time beam search on `make translate`'s trained model and its real test set, "
                        "where that exists (converted for fairseq with `bigseq convert to-fairseq`)")
    p.add_argument("--quiet-wait", type=float, default=20, help="wait up to this long for other processes to idle")
    p.add_argument("--timeout", type=float, default=1200, help="seconds before a run is killed")
    p.add_argument("--work-dir", type=Path, default=BENCH_DIR / ".peer-work" / "translation")
    p.add_argument("--venv-dir", type=Path, default=BENCH_DIR / ".peer-venvs" / "fairseq")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "translation_vs_fairseq.md")
    return p.parse_args()


def write_bitext(folder: Path, args) -> None:
    """Source w0..w{V-1}, 5-40 words; target: each word mapped to x<i>, adjacent pairs swapped every third word."""
    rng = random.Random(0)
    for split, n in (("train", args.train_sentences), ("valid", 100), ("test", args.test_sentences)):
        src, tgt = [], []
        for _ in range(n):
            ids = [int(rng.paretovariate(1.0)) % args.vocab for _ in range(rng.randint(5, 40))]  # Zipf-like
            out = list(ids)
            for i in range(0, len(out) - 1, 3):
                out[i], out[i + 1] = out[i + 1], out[i]
            src.append(" ".join(f"w{i}" for i in ids))
            tgt.append(" ".join(f"x{i}" for i in out))
        (folder / f"{split}.src").write_text("\n".join(src) + "\n")
        (folder / f"{split}.tgt").write_text("\n".join(tgt) + "\n")


def mean_target_tokens_per_update(data: Path, max_tokens: int) -> float:
    """The epoch's target tokens / its updates: the same for both tools (bigseq plans fairseq's batches)."""
    from bigseq.tasks.translation import TranslationConfig, TranslationTask
    task = TranslationTask(TranslationConfig(data=str(data), source_lang="src", target_lang="tgt"))
    itr = task.get_batch_iterator("train", batch_size=None, max_tokens=max_tokens, seed=1, dp_rank=0, dp_size=1)
    return float(task.pairs["train"][1].sizes.sum()) / itr.updates_per_epoch


def training_runs(args, fairseq_bin: Path, data: Path) -> list[tuple[str, list[str]]]:
    a = args
    model = ["--arch", "transformer", "--share-all-embeddings", "--encoder-layers", str(a.layers),
             "--decoder-layers", str(a.layers), "--encoder-embed-dim", str(a.dim), "--decoder-embed-dim", str(a.dim),
             "--encoder-ffn-embed-dim", str(a.ffn), "--decoder-ffn-embed-dim", str(a.ffn),
             "--encoder-attention-heads", str(a.heads), "--decoder-attention-heads", str(a.heads), "--dropout", "0.1"]
    common = [str(data), "--task", "translation", "-s", "src", "-t", "tgt", *model, "--criterion",
              "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--optimizer", "adam", "--lr", "5e-4",
              "--max-tokens", str(a.max_tokens), "--max-update", str(a.warmup + a.updates), "--seed", "1",
              "--log-format", "json", "--log-interval", str(a.log_interval), "--disable-validation"]
    fairseq = [str(fairseq_bin / "fairseq-train"), *common, "--cpu", "--required-batch-size-multiple", "1",
               "--no-epoch-checkpoints", "--no-save-optimizer-state"]
    bigseq = [str(Path(sys.executable).parent / "bigseq"), "train", *common, "--no-save"]
    return [(BASELINE, [*fairseq, "--save-dir", str(a.work_dir / "fairseq-fp32")]),
            # fairseq's --bf16 with --cpu: kept in the table whatever it does (it took the TPU path in 0.12)
            ("fairseq-train bf16", [*fairseq, "--bf16", "--no-save"]),
            ("bigseq fp32", [*bigseq, "--precision", "fp32"]),
            ("bigseq bf16", [*bigseq, "--precision", "bf16"])]


def generation_runs(args, fairseq_bin: Path, data: Path, checkpoint: Path, folder: Path):
    flags = ["--gen-subset", "test", "--beam", str(args.beam), "--batch-size", str(args.gen_batch_size),
             # a briefly trained model repeats words until --max-len-b 200; cap the length as for real MT
             "--max-len-a", "1.2", "--max-len-b", "10", "--scoring", "bleu"]
    return [("fairseq-generate", [str(fairseq_bin / "fairseq-generate"), str(data), "--path", str(checkpoint),
                                  *flags, "-s", "src", "-t", "tgt", "--cpu", "--required-batch-size-multiple", "1"]),
            ("bigseq generate", [str(Path(sys.executable).parent / "bigseq"), "generate", str(data), "--path",
                                 str(folder), *flags])]


def demo_generation_runs(args, fairseq_bin: Path) -> list[tuple[str, list[str]]]:
    """The same pair on the translation demo's trained model and real test set; [] without the demo."""
    data = args.demo_checkpoint.parent / "data"
    if not (args.demo_checkpoint / "latest").is_file() or not (data / "metadata.json").is_file():
        print(f"[skip] no trained demo model in {args.demo_checkpoint} (run `make translate` first)", flush=True)
        return []
    converted = args.work_dir / "demo-fairseq.pt"
    subprocess.run([sys.executable, "-m", "bigseq.cli.main", "convert", "to-fairseq", str(args.demo_checkpoint),
                    str(converted)], check=True, cwd=REPO_ROOT, capture_output=True)
    meta = json.loads((data / "metadata.json").read_text())
    flags = ["--gen-subset", "test", "--beam", str(args.beam), "--batch-size", str(args.gen_batch_size),
             "--scoring", "bleu", "--quiet"]
    return [("fairseq-generate, demo model", [str(fairseq_bin / "fairseq-generate"), str(data), "--path",
                                              str(converted), *flags, "-s", meta["source_lang"], "-t",
                                              meta["target_lang"], "--cpu", "--required-batch-size-multiple", "1"]),
            ("bigseq generate, demo model", [str(Path(sys.executable).parent / "bigseq"), "generate", str(data),
                                             "--path", str(args.demo_checkpoint), *flags])]


def run_generation(name: str, command: list[str], log: Path, timeout: float) -> tuple[float | None, str]:
    """-> (sentences/s from the tool's own 'Translated' line, a note)."""
    print(f"[run] {name}", flush=True)
    start = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=FAIRSEQ_ENV)
    log.write_text(proc.stdout + proc.stderr)
    found = _TRANSLATED.search(proc.stderr) or _TRANSLATED.search(proc.stdout)
    if proc.returncode or not found:
        return None, f"failed (exit {proc.returncode}), see {log}"
    return float(found.group(2)), f"{found.group(1)} sentences, {time.monotonic() - start:.1f}s wall with start-up"


def main() -> None:
    args = parse_args()
    fairseq_bin = ensure_fairseq_venv(args.venv_dir)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    text, data = args.work_dir / "text", args.work_dir / "data-bin"
    (args.work_dir / ".gitignore").write_text("*\n")
    text.mkdir(exist_ok=True)
    write_bitext(text, args)
    shutil.rmtree(data, ignore_errors=True)  # binarized afresh: the sizes may have changed
    subprocess.run([str(fairseq_bin / "fairseq-preprocess"), "-s", "src", "-t", "tgt", "--joined-dictionary",
                        "--trainpref", str(text / "train"), "--validpref", str(text / "valid"), "--testpref",
                   str(text / "test"), "--destdir", str(data), "--workers", "2"], check=True, capture_output=True)
    tokens_per_update = mean_target_tokens_per_update(data, args.max_tokens)

    results: list[RunResult] = []
    train = training_runs(args, fairseq_bin, data)
    shutil.rmtree(args.work_dir / "fairseq-fp32", ignore_errors=True)  # else fairseq-train resumes from it
    for name, command in train:
        wait_until_quiet(args.quiet_wait)
        result = run_and_measure(name, command, log_path=args.work_dir / f"{name.replace(' ', '_')}.log",
                                 warmup=args.warmup, log_interval=args.log_interval,
                                 tokens_per_update=round(tokens_per_update), timeout_s=args.timeout)
        print(f"[run] {describe_run(result)}", flush=True)
        results.append(result)

    checkpoint, folder = args.work_dir / "fairseq-fp32" / "checkpoint_last.pt", args.work_dir / "from-fairseq"
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "bigseq.cli.main", "convert", "from-fairseq", str(checkpoint), str(folder),
                    "--data", str(data)], check=True, cwd=REPO_ROOT)
    gen_runs = generation_runs(args, fairseq_bin, data, checkpoint, folder) + demo_generation_runs(args, fairseq_bin)
    rates: dict[str, list[float]] = {name: [] for name, _ in gen_runs}
    notes: dict[str, str] = {}
    for _ in range(args.gen_repeats):  # alternating, so a drift in the machine's speed hits both tools alike
        for name, command in gen_runs:
            wait_until_quiet(args.quiet_wait)
            rate, notes[name] = run_generation(name, command, args.work_dir / f"{name.replace(' ', '_')}.log",
                                               args.timeout)
            if rate:
                rates[name].append(rate)
    generated = []
    for name, command in gen_runs:
        runs = rates[name]
        note = (f"median of {len(runs)} runs: {', '.join(f'{r:.2f}' for r in runs)}; last: {notes[name]}" if runs
                else notes[name])
        generated.append((name, statistics.median(runs) if runs else None, note, command))

    table = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    table += ["| " + " | ".join(row) + " |" for row in table_rows(results, BASELINE)]
    table += ["", "| generation | sentences/s | vs fairseq-generate | notes |", "|---|---|---|---|"]
    for i, (name, rate, note, _) in enumerate(generated):
        base = generated[i - i % 2][1]  # each bigseq row against the fairseq row before it
        ratio = f"{rate / base:.2f}x" if rate and base else "-"
        table.append(f"| {name} | {f'{rate:.2f}' if rate else 'failed'} | {ratio} | {note} |")
    shown = lambda cmd: " ".join(cmd).replace(str(REPO_ROOT) + "/", "")  # noqa: E731
    table += ["", "Commands:", "", *[f"- {name}: `{shown(cmd)}`" for name, cmd in train],
              *[f"- {name}: `{shown(cmd)}`" for name, _, _, cmd in generated]]
    setup = (f"Model: transformer {args.layers}+{args.layers} layers, dim {args.dim}, FFN {args.ffn}, {args.heads} "
             f"heads, shared embeddings; data: {args.train_sentences:,} synthetic pairs (vocabulary {args.vocab} a "
             f"side), --max-tokens {args.max_tokens} = {tokens_per_update:,.0f} target tokens per update on "
             f"average; {args.warmup} warmup + {args.updates} timed updates; generation: {args.test_sentences} test "
             f"sentences, beam {args.beam}, batch {args.gen_batch_size}, --max-len-a 1.2 --max-len-b 10; "
             "demo model (where `make translate` has trained it): its 1.9M-parameter fr-en model and 1,071 "
             "held-out Bible verses, beam and batch the same, default lengths. "
             f"fairseq venv: {installed_versions(fairseq_bin)}. tokens/s: target tokens over the timed windows on "
             "one clock (peers/measure.py); sentences/s: each tool's own 'Translated' line (median of the "
             f"{args.gen_repeats} alternating runs), which times only the "
             "beam search calls (fairseq's gen_timer; bigseq the same: loading, detokenizing and printing are "
             "outside it); the wall column includes start-up and everything else.")
    command = shown([".venv/bin/python", "benchmarks/translation_vs_fairseq.py", *sys.argv[1:]])
    write(str(args.out), "Translation on CPU: bigseq vs fairseq (training and beam search)", setup, command, table,
          reading(results, generated))


def reading(results: list[RunResult], generated: list) -> str:
    rate = {r.name: r.tokens_per_s for r in results}
    parts = []
    for precision in ("fp32", "bf16"):
        ours, theirs = rate.get(f"bigseq {precision}"), rate.get(f"fairseq-train {precision}")
        if ours and theirs:
            parts.append(f"bigseq trains at {ours / theirs:.2f}x fairseq's {precision} tokens/s")
        elif ours and rate.get(BASELINE):
            parts.append(f"bigseq {precision} trains at {ours / rate[BASELINE]:.2f}x fairseq's fp32 tokens/s "
                         f"(fairseq-train {precision}: failed)")
    for (name, base, _, _), (_, ours, _, _) in zip(generated[::2], generated[1::2]):
        if base and ours:
            model = " on the demo model" if "demo" in name else ""
            parts.append(f"bigseq generate translates {ours / base:.2f}x as many sentences/s as "
                         f"fairseq-generate{model}")
    return "; ".join(parts) + "."


if __name__ == "__main__":
    main()
