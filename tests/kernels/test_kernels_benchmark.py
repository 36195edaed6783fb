"""benchmarks/kernels.py runs end to end at its tiny size and writes its table."""

import importlib.util
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "kernels.py"


def test_benchmark_script_writes_its_table(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bigseq_kernels_benchmark", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "kernels.md"
    bench.main(["--tiny", "--out", str(out)])
    text = out.read_text()
    for kernel in ("| attention |", "| cross_entropy |", "| linear_cross_entropy |", "| decode_attention |"):
        assert kernel in text, f"no {kernel} row"
    assert "| triton" in text  # the kernels ran, not only the torch baseline
    if not torch.cuda.is_available():
        assert "NOT a speed comparison" in text
    assert text in capsys.readouterr().out
