"""One JSON line: what the GPU check ran on (commit, device, driver, versions, CPU), for its results file."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path

import torch

from bigseq.distributed.cpu_features import describe_cpu

ROOT = Path(__file__).resolve().parents[2]


def _run(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def facts() -> dict[str, str]:
    # a copied working tree may come without .git: BIGSEQ_COMMIT names the commit it was copied from
    commit = _run("git", "rev-parse", "--short", "HEAD") or os.environ.get("BIGSEQ_COMMIT", "unknown (no git)")
    if _run("git", "status", "--porcelain", "--untracked-files=no"):
        commit += " + uncommitted changes"
    cuda = torch.cuda.is_available()
    return {
        "commit": commit,
        "device": torch.cuda.get_device_name() if cuda else "none (CPU dry run)",
        "driver": _run("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader") or "n/a",
        "CUDA (torch)": str(torch.version.cuda), "torch": torch.__version__,
        **{name: _version(name) for name in ("triton", "transformers", "accelerate", "deepspeed")},
        "python": platform.python_version(), "CPU": describe_cpu(),
    }


if __name__ == "__main__":
    print(json.dumps(facts()))
