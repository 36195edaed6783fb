"""The wheels the GPU machine lacks: deepspeed (pure Python, no ops compiled) and what it needs there.

    python benchmarks/gpu/wheels.py [--dest .gpu-wheels] [--python-version 3.12]   # `make gpu-wheels`, here
    python3 benchmarks/gpu/wheels.py --install .gpu-wheels TARGET                  # there (check.py does it)

That machine has torch, triton, transformers and accelerate but not deepspeed, and reaches no
network: the wheels travel with the working tree (`.gpu-wheels/` is ignored: name it in the device
tool's carry list) and `check.py` installs them offline. Versions are the ones installed here.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILT = ("deepspeed",)  # pip wheel: its sdist builds a py3-none-any wheel without compiling ops
DOWNLOADED = ("hjson", "pydantic", "pydantic-core", "annotated-types", "typing-inspection")
# manylinux tags for pydantic-core's compiled wheel on that machine's CPython
PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_28_x86_64")


def build(dest: Path, python_version: str) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    pin = [f"{n}=={importlib.metadata.version(n)}" for n in (*BUILT, *DOWNLOADED)]
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), *pin[:len(BUILT)]],
                   check=True, env={**os.environ, "DS_BUILD_OPS": "0"})
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", python_version,
                    "--implementation", "cp", *platforms, "-d", str(dest), *pin[len(BUILT):]], check=True)
    return sorted(dest.glob("*.whl"))


def missing(wheels: Path) -> list[str]:
    """The packages without a wheel in ``wheels`` (wheel names spell '-' as '_')."""
    names = {w.name.split("-")[0].lower() for w in wheels.glob("*.whl")}
    return [n for n in (*BUILT, *DOWNLOADED) if n.replace("-", "_") not in names]


def install(wheels: Path, target: Path) -> list[str]:
    """Offline, into ``target`` (put it on PYTHONPATH): the system's packages stay as they are."""
    if missing(wheels):
        raise SystemExit(f"{wheels}: no wheel for {', '.join(missing(wheels))}; run `make gpu-wheels` on the "
                         f"machine you start from and carry {wheels.name} with the working tree")
    found = sorted(str(w) for w in wheels.glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--upgrade", "--target", str(target), *found], check=True)
    return [Path(w).name for w in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".gpu-wheels")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's CPython (KINDS.md: 3.12)")
    parser.add_argument("--install", nargs=2, type=Path, metavar=("WHEELS", "TARGET"),
                        help="install WHEELS/*.whl offline into TARGET instead")
    args = parser.parse_args()
    if args.install:
        print(f"installed into {args.install[1]}: {', '.join(install(*args.install))}")
        return
    for wheel in build(args.dest, args.python_version):
        print(f"{wheel.stat().st_size / 2**20:6.2f} MiB  {wheel}")


if __name__ == "__main__":
    main()
