"""Op builder for the csrc/ CUDA extension: ahead-of-time module, or JIT build on first use.

AOT: ``BIGSEQ_BUILD_OPS=1 pip install .`` builds ``cuda_extension()`` as the module
``bigseq.kernels.cuda._C``. Otherwise ``load()`` compiles csrc/ with
torch.utils.cpp_extension.load (ninja; cached under TORCH_EXTENSIONS_DIR).
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path

import torch

CSRC = Path(__file__).resolve().parents[3] / "csrc"
SOURCES = ("bindings.cpp", "softmax_cross_entropy.cu", "decode_attention.cu")
AOT_MODULE = "bigseq.kernels.cuda._C"
JIT_NAME = "bigseq_cuda_ops"
NVCC_FLAGS = ("-O3", "-lineinfo")
MIN_CAPABILITY = (8, 0)  # bf16 conversions and the kernels' launch shapes assume sm_80+


def _aot_module():
    try:
        return importlib.import_module(AOT_MODULE)
    except ImportError:
        return None


def is_compatible() -> tuple[bool, str]:
    """(usable, reason): why the CUDA ops cannot run here, or how they will be loaded."""
    if torch.version.cuda is None:
        return False, f"this torch ({torch.__version__}) was built without CUDA"
    if not torch.cuda.is_available():
        return False, "no CUDA device is visible (torch.cuda.is_available() is False)"
    capability = torch.cuda.get_device_capability()
    if capability < MIN_CAPABILITY:
        return False, f"needs compute capability >= {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]}, found {capability}"
    if _aot_module() is not None:
        return True, "prebuilt extension"
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None:
        return False, ("no prebuilt ops and no CUDA toolkit (nvcc) found: set CUDA_HOME, "
                       "or build ahead of time with BIGSEQ_BUILD_OPS=1 pip install .")
    missing = [s for s in SOURCES if not (CSRC / s).is_file()]
    if missing:
        return False, f"no prebuilt ops and the CUDA sources are missing from {CSRC}: {missing}"
    if not cpp_extension.is_ninja_available():
        return False, "no prebuilt ops and ninja is not installed (pip install ninja) for the JIT build"
    return True, "JIT build from csrc/"


@functools.lru_cache(maxsize=None)
def load():
    """The extension module; raises RuntimeError with the reason when it cannot be had."""
    ok, why = is_compatible()
    if not ok:
        raise RuntimeError(why)
    module = _aot_module()
    if module is not None:
        return module
    from torch.utils import cpp_extension

    return cpp_extension.load(name=JIT_NAME, sources=[str(CSRC / s) for s in SOURCES],
                              extra_cuda_cflags=list(NVCC_FLAGS), extra_include_paths=[str(CSRC)],
                              verbose=os.environ.get("BIGSEQ_VERBOSE_BUILD") == "1")


def cuda_extension():
    """The setuptools extension for ``BIGSEQ_BUILD_OPS=1 pip install .`` (setup.py calls this)."""
    from torch.utils.cpp_extension import CUDAExtension

    root = CSRC.parent
    return CUDAExtension(AOT_MODULE, sources=[str((CSRC / s).relative_to(root)) for s in SOURCES],
                         include_dirs=[str(CSRC)], extra_compile_args={"cxx": ["-O3"], "nvcc": list(NVCC_FLAGS)})
