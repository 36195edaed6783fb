"""A private virtual environment with fairseq-train (PyPI `fairseq-fixed`) on the CPU build of torch.

Install notes (why each step is the way it is):
- torch is pinned to 2.13.0, the CPU wheel pip takes from the local wheel store; letting pip
  resolve `torch>=1.13` freely would pull a multi-GB CUDA build.
- fairseq-fixed's build needs torch, numpy and Cython at build time; building in pip's isolated
  build environment would fetch another torch, so we build with --no-build-isolation against
  the venv's own.
- fairseq-fixed declares `torchaudio>=0.8.0`, but no torchaudio release matches torch 2.13 and
  the text language-model path never imports it: install with --no-deps and then list the
  remaining runtime dependencies ourselves.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FAIRSEQ_PACKAGE = "fairseq-fixed==0.12.3.1"
BUILD_REQUIREMENTS = ["torch==2.13.0", "numpy==2.4.6", "cython==3.3.1", "setuptools", "wheel"]
RUNTIME_REQUIREMENTS = ["cffi", "hydra-core==1.3.2", "omegaconf==2.3.0", "regex", "sacrebleu>=1.4.12",
                        "tqdm", "bitarray", "scikit-learn", "packaging"]
_STAMP = "bigseq-benchmark-ready.txt"


def ensure_fairseq_venv(venv_dir: Path) -> Path:
    """Create (or reuse) the venv; return its bin/ folder holding fairseq-train and fairseq-preprocess."""
    bin_dir = venv_dir / "bin"
    if (venv_dir / _STAMP).exists() and (bin_dir / "fairseq-train").exists():
        return bin_dir
    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    _ignore_in_git(venv_dir.parent)
    print(f"[setup] creating {venv_dir} and installing {FAIRSEQ_PACKAGE} (one time, ~3 min)", flush=True)
    _run([sys.executable, "-m", "venv", "--clear", str(venv_dir)])
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run(pip + BUILD_REQUIREMENTS)
    _run(pip + ["--no-build-isolation", "--no-deps", FAIRSEQ_PACKAGE])
    _run(pip + RUNTIME_REQUIREMENTS)
    _run([str(bin_dir / "python"), "-c", "import fairseq.tasks.language_modeling"])
    (venv_dir / _STAMP).write_text(installed_versions(bin_dir) + "\n")
    return bin_dir


def installed_versions(bin_dir: Path) -> str:
    """'fairseq-fixed 0.12.3.1, torch 2.13.0+cpu, ...' for the packages that matter to the timings."""
    code = ("import importlib.metadata as m; print(', '.join(f'{n} {m.version(n)}' for n in "
            "['fairseq-fixed', 'torch', 'numpy', 'cython', 'hydra-core', 'omegaconf']))")
    return subprocess.run([str(bin_dir / "python"), "-c", code], check=True, capture_output=True,
                          text=True).stdout.strip()


def _ignore_in_git(folder: Path) -> None:
    """Keep a generated folder out of git without touching the repository's .gitignore."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".gitignore").write_text("*\n")


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"command failed ({result.returncode}): {' '.join(cmd)}\n{tail}")
