"""`make gpu-check`: every GPU figure of bigseq in one command of at most 9 minutes.

    python3 benchmarks/gpu/check.py [--copy-to DIR]   # on a CUDA machine: results in benchmarks/results/
    python3 benchmarks/gpu/check.py --dry-run         # CPU: tiny sizes, Triton interpreter, nothing timed

Steps, each in its own process group under its own time budget, with a progress line before and
after; the results file is rewritten after every step, so a run cut off keeps what it measured:
  1. install deepspeed & co. offline from .gpu-wheels/ (`make gpu-wheels`), then read the versions
  2. the `gpu`-marked tests (tests/kernels, compiled Triton: TRITON_INTERPRET=0)
  3. benchmarks/kernels.py at its full sizes (attention, losses, decode attention)
  4. llama_1b bf16 through `bigseq train`, then HF Trainer on the same model and data
  5. benchmarks/results/gpu-<date>-<device>.md (dry run: --out, a scratch folder), printed
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import gpu_report  # noqa: E402
from wheels import missing as wheels_missing  # noqa: E402

# (name, seconds on a GPU) in order; their sum stays under the 540 s default budget
STEPS = (("install", 45), ("gpu tests", 150), ("kernels", 150), ("bigseq train", 90), ("HF Trainer", 80))


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][-300:] if lines else "no output"


class Check:
    def __init__(self, args):
        self.args, self.dry = args, args.dry_run
        self.deadline = time.monotonic() + args.budget_s
        self.work = args.out / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
                    "TRITON_INTERPRET": "1" if self.dry else "0"}
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.work / "site"), str(ROOT),
                                                               os.environ.get("PYTHONPATH")]))
        self.results: dict[str, dict] = {}
        self.facts: dict[str, str] = {}

    def run(self, name: str, cmd: list[str], budget: float) -> tuple[int | None, str]:
        """rc (None: out of time, its process group killed) and the output, also kept in work/<name>.log."""
        log = self.work / f"{name.replace(' ', '_')}.log"
        timeout = max(1.0, min(budget, self.deadline - time.monotonic() - 5))
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rc = None
        return rc, log.read_text(errors="replace")

    def step(self, index: int, name: str, budget: float, body) -> None:
        left = self.deadline - time.monotonic()
        print(f"[gpu-check {index}/{len(STEPS)}] {name}: start (budget {budget:.0f} s, {left:.0f} s left)", flush=True)
        start = time.monotonic()
        try:
            status, summary, lines = body(budget) if left > 10 else ("skipped", "no time left", [])
        except Exception as e:  # a broken step must not cost the steps after it
            status, summary, lines = "failed", f"{type(e).__name__}: {e}", []
        seconds = time.monotonic() - start
        self.results[name] = {"status": status, "seconds": seconds, "summary": summary, "lines": lines}
        print(f"[gpu-check {index}/{len(STEPS)}] {name}: {status} in {seconds:.0f} s: {summary}", flush=True)
        self.write()

    # the steps -------------------------------------------------------------------------------
    def install(self, budget):
        wheels = self.args.wheels
        if self.dry:  # the wheels are for the GPU machine's CPython: check them, install nothing
            gaps = wheels_missing(wheels) if wheels.is_dir() else None
            status = "failed" if gaps else "ok"
            summary = (f"{wheels.name}: no wheel for {', '.join(gaps)}" if gaps else f"{wheels.name} complete"
                       if gaps is not None else f"no {wheels.name} here (make gpu-wheels): nothing to check")
        elif importlib.util.find_spec("deepspeed"):
            status, summary = "ok", "deepspeed already importable: nothing installed"
        else:
            cmd = [sys.executable, str(HERE / "wheels.py"), "--install", str(wheels), str(self.work / "site")]
            rc, text = self.run("install", cmd, budget)
            if rc != 0:
                return "failed" if rc else "timeout", last_line(text), []
            status, summary = "ok", last_line(text)
        rc, text = self.run("facts", [sys.executable, str(HERE / "facts.py")], 30)
        self.facts = json.loads(text.strip().splitlines()[-1]) if rc == 0 else {"facts": text[-300:]}
        return status, summary, []

    def gpu_tests(self, budget):
        cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/kernels", "-v", "-p", "no:cacheprovider",
               "-o", "addopts="]  # the step budget bounds it; a first CUDA op build can take minutes
        rc, text = self.run("gpu tests", cmd, budget)
        verdicts = re.findall(r"^(tests/\S+) (PASSED|FAILED|SKIPPED|ERROR)", text, re.M)
        counts = {v: sum(1 for _, x in verdicts if x == v) for v in ("PASSED", "FAILED", "ERROR", "SKIPPED")}
        summary = ", ".join(f"{n} {v.lower()}" for v, n in counts.items() if n) or "no test ran"
        lines = [f"- {t}: {v}" for t, v in verdicts if v in ("FAILED", "ERROR")]
        status = "timeout" if rc is None else "ok" if rc == 0 else "failed"
        return status, summary + ("" if rc is not None else " before the budget ran out"), lines

    def kernels(self, budget):
        cmd = [sys.executable, "benchmarks/kernels.py", "--out", str(self.work / "kernels.md")]
        rc, text = self.run("kernels", cmd + (["--dry-run"] if self.dry else []), budget)
        rows = list(dict.fromkeys(line for line in text.splitlines() if re.match(r"\| (attention|cross|linear|decode)",
                                                                                   line)))
        peak = next((line for line in text.splitlines() if line.startswith("matmul roofline")), "")
        table = ["| kernel | case | ours | torch | roofline | note |", "|---|---|---|---|---|---|", *rows]
        status = "timeout" if rc is None else "ok" if rc == 0 else "failed"
        summary = f"{len(rows)} rows; {peak if rc == 0 else last_line(text)}"
        return status, summary, [peak, "", *table] if rows else []

    def train(self, tool, budget):
        cmd = [sys.executable, str(HERE / "train_speed.py"), "--tool", tool, "--work", str(self.work)]
        rc, text = self.run(f"{tool} train", cmd + (["--dry-run"] if self.dry else []), budget)
        found = [line[len("RESULT "):] for line in text.splitlines() if line.startswith("RESULT ")]
        if rc != 0 or not found:
            return "timeout" if rc is None else "failed", last_line(text), []
        r = json.loads(found[-1])
        self.results.setdefault("_training", {})[tool] = r
        return "ok", (f"{r['tokens_per_s']:,.0f} tokens/s, {r['model_tflops']:.3g} model TFLOP/s, "
                      f"MFU {r['mfu']:.1%} of a measured {r['peak_tflops']:.3g} TFLOP/s bf16 peak"), []

    # the results file --------------------------------------------------------------------------
    def write(self) -> None:
        text = gpu_report.markdown(self.facts, self.results, self.dry, STEPS)
        tmp = self.args.result.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.args.result)
        if self.args.copy_to:
            os.makedirs(self.args.copy_to, exist_ok=True)
            for path in [self.args.result, *self.work.glob("*.log")]:
                shutil.copy(path, self.args.copy_to)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU: tiny sizes, Triton interpreter, no timing")
    parser.add_argument("--budget-s", type=float, default=540, help="the whole check's time (9 min)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results and work folder (default: dry run a fresh temp dir, else .gpu-check/)")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".gpu-wheels")
    parser.add_argument("--copy-to", default=None, help="also copy the results file and step logs here")
    args = parser.parse_args(argv)
    device = ""
    if not args.dry_run:
        import torch
        if not torch.cuda.is_available():
            parser.error("no CUDA device here; on a CPU run `make gpu-check DRY_RUN=1`")
        device = torch.cuda.get_device_name()
    args.out = args.out or (Path(tempfile.mkdtemp(prefix="bigseq-gpu-check-")) if args.dry_run
                            else ROOT / ".gpu-check")
    results_dir = args.out if args.dry_run else ROOT / "benchmarks" / "results"
    args.result = results_dir / gpu_report.file_name(args.dry_run, device)
    check = Check(args)
    bodies = (check.install, check.gpu_tests, check.kernels, lambda b: check.train("bigseq", b),
              lambda b: check.train("hf", b))
    scale = 1.0 if not args.dry_run else 0.5  # the dry run's steps take seconds, not minutes
    for index, ((name, budget), body) in enumerate(zip(STEPS, bodies), 1):
        check.step(index, name, budget * scale * args.budget_s / 540, body)
    print("\n" + args.result.read_text())
    print(f"results: {args.result}")
    return 0 if all(r["status"] == "ok" for k, r in check.results.items() if not k.startswith("_")) else 1


if __name__ == "__main__":
    raise SystemExit(main())
