"""What the benchmark scripts share: the results file's header and the Llama-style model flags."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from bigseq.distributed.cpu_features import describe_cpu

ROOT = Path(__file__).resolve().parent.parent


def llama_flags(dim: int, ffn: int, layers: int) -> list[str]:
    """`bigseq train` flags for a Llama-style model of that shape (64-wide heads)."""
    heads = str(max(1, dim // 64))
    return ["--arch", "llama_tiny", "--decoder-embed-dim", str(dim), "--decoder-ffn-embed-dim", str(ffn),
            "--decoder-layers", str(layers), "--decoder-attention-heads", heads, "--decoder-kv-heads", heads]


def add_llama_size_args(parser: argparse.ArgumentParser) -> None:
    """--dim/--ffn/--layers of the Llama-style model (default: 103M parameters), for `llama_flags`."""
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--ffn", type=int, default=2816)
    parser.add_argument("--layers", type=int, default=8)


def write(out: str, title: str, setup: str, command: str, table: list[str], reading: str) -> None:
    """out: '# title', the date / commit / machine line followed by `setup`, the command, the table, the reading."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    when = f"{datetime.now(timezone.utc):%Y-%m-%d}, commit {commit}, {platform.machine()}, "
    when += f"{describe_cpu()}, {os.cpu_count()} cores."
    lines = [f"# {title}", "", f"{when} {setup}", "", f"Command: `{command}`", "", *table, "", f"Reading: {reading}"]
    Path(out).write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
