"""benchmarks/long_context.py runs end to end at a tiny size (its numbers are not checked, only its shape)."""

import importlib.util
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "long_context.py"


@pytest.mark.slow
def test_long_context_benchmark_runs_at_a_tiny_size():
    spec = importlib.util.spec_from_file_location("bigseq_long_context_benchmark", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    text = bench.main(["--arch", "llama_tiny", "--vocab", "300", "--tokens", "64", "--rows", "2", "--doc-tokens",
                       "8", "--chunks", "1,2", "--repeats", "1"])
    assert "| plain packing |" in text and "| --document-mask |" in text
    chunk_losses = re.findall(r"^\| [12] \|.* \| (\d+\.\d+) \|$", text, re.MULTILINE)
    assert len(chunk_losses) == 2 and chunk_losses[0] == chunk_losses[1]  # tiling changes no loss
