"""bigseq package metadata. ``BIGSEQ_BUILD_OPS=1 pip install .`` also builds the CUDA ops."""

import os

from setuptools import find_packages, setup


def cuda_build_args() -> dict:
    """BIGSEQ_BUILD_OPS=1: compile csrc/ into bigseq.kernels.cuda._C now (needs torch with CUDA and nvcc;
    install with --no-build-isolation so the build sees that torch). Otherwise the ops JIT-build on first use."""
    if os.environ.get("BIGSEQ_BUILD_OPS") != "1":
        return {}
    from torch.utils.cpp_extension import BuildExtension

    from bigseq.kernels.cuda.builder import cuda_extension
    return {"ext_modules": [cuda_extension()], "cmdclass": {"build_ext": BuildExtension}}


setup(
    name="bigseq",
    version="0.1.0",
    description="fairseq-style sequence modeling trained inside DeepSpeed (ZeRO, pipeline), with Triton/CUDA kernels",
    packages=find_packages(include=["bigseq", "bigseq.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "deepspeed>=0.16",
        "transformers>=4.45",
        "datasets>=3.0",
        "accelerate>=1.0",
        "tokenizers>=0.20",
        "safetensors",
        "tqdm",
        "pyyaml",
        "numpy",
        "sacrebleu>=2.0",
    ],
    extras_require={
        "triton": ["triton>=3.0"],
        "dev": ["pytest", "pytest-timeout", "ruff", "tensorboard"],
        "plot": ["matplotlib"],  # bigseq plot
        "wandb": ["wandb"],  # --wandb-project
    },
    entry_points={"console_scripts": ["bigseq = bigseq.cli.main:main"]},
    **cuda_build_args(),
)
