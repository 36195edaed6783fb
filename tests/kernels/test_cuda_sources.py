"""The csrc/ CUDA sources compile for sm_80 and sm_90, and the op builder explains itself on CPU.

The kernels (.cu) include only CUDA headers, so nvcc compiles them in seconds; the torch
bindings (.cpp) are checked with the host compiler against torch's headers. nvcc is
called directly: torch.utils.cpp_extension refuses CUDA builds on a CPU-only torch.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from bigseq.kernels.cuda import builder

CSRC = Path(__file__).resolve().parents[2] / "csrc"
NVCC = shutil.which("nvcc")


def _cuda_include():
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and (Path(home) / "include" / "cuda_runtime_api.h").is_file():
            return Path(home) / "include"
    return None


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
def test_every_cu_source_compiles_for_sm80_and_sm90(tmp_path):
    sources = sorted(CSRC.glob("*.cu"))
    assert {s.name for s in sources} >= {"softmax_cross_entropy.cu", "decode_attention.cu"}
    cmd = [NVCC, "-c", "-std=c++20", "-O3", "-I", str(CSRC), "-odir", str(tmp_path),
           "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90",
           *map(str, sources)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    for source in sources:
        obj = tmp_path / (source.stem + ".o")
        assert obj.is_file() and obj.stat().st_size > 0
        cuobjdump = shutil.which("cuobjdump")
        if cuobjdump:  # both architectures' machine code are embedded in the object
            listing = subprocess.run([cuobjdump, "--list-elf", str(obj)], capture_output=True, text=True)
            assert "sm_80" in listing.stdout and "sm_90" in listing.stdout, listing.stdout


@pytest.mark.skipif(shutil.which("g++") is None or _cuda_include() is None, reason="g++ or CUDA headers not found")
def test_torch_bindings_compile_against_torch_headers():
    from torch.utils.cpp_extension import include_paths

    includes = [f"-I{p}" for p in (*include_paths(), sysconfig.get_paths()["include"], _cuda_include(), CSRC)]
    cmd = ["g++", "-fsyntax-only", "-std=c++20", "-w", *includes, "-DTORCH_EXTENSION_NAME=bigseq_cuda_ops",
           str(CSRC / "bindings.cpp")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


def test_builder_lists_existing_sources():
    for source in builder.SOURCES:
        assert (builder.CSRC / source).is_file(), source


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only explanation")
def test_is_compatible_explains_why_not_on_cpu():
    ok, why = builder.is_compatible()
    assert not ok
    assert "CUDA" in why and len(why) > 20
    with pytest.raises(RuntimeError, match="CUDA"):
        builder.load()


def test_package_imports_without_building_anything():
    code = ("import sys, bigseq.kernels.cuda.builder, bigseq.kernels.cuda.ops; "
            "assert 'bigseq_cuda_ops' not in sys.modules and 'bigseq.kernels.cuda._C' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
