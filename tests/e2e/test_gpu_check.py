"""`make gpu-check DRY_RUN=1`: the GPU check's whole script on CPU (tiny sizes, Triton interpreter), so it
cannot rot between the rare GPU sessions. Every step must pass and write its part of the results file."""

import os
import re
import subprocess
import sys

import pytest

from .runner import ROOT

pytestmark = pytest.mark.slow


def test_dry_run_runs_every_step_and_writes_the_results_file(tmp_path):
    results_before = set(os.listdir(os.path.join(ROOT, "benchmarks", "results")))
    proc = subprocess.run([sys.executable, "benchmarks/gpu/check.py", "--dry-run", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for i, step in enumerate(("install", "gpu tests", "kernels", "bigseq train", "HF Trainer"), 1):
        assert f"[gpu-check {i}/5] {step}: start" in proc.stdout and f"[gpu-check {i}/5] {step}: ok" in proc.stdout
    (result,) = tmp_path.glob("gpu-*-dry-run.md")
    text = result.read_text()
    assert "Dry run on CPU" in text and "torch 2" in text and "bf16:" in text  # versions and the CPU's bf16
    assert re.search(r"\| gpu tests \| ok \| \d+ \| \d+ skipped \|", text)  # collected, skipped without CUDA
    for kernel in ("attention", "cross_entropy", "linear_cross_entropy", "decode_attention"):
        assert f"| {kernel} |" in text
    assert "| bigseq train | " in text and "| HF Trainer | " in text and "bigseq / HF Trainer:" in text
    assert text in proc.stdout  # the table is printed
    assert set(os.listdir(os.path.join(ROOT, "benchmarks", "results"))) == results_before
