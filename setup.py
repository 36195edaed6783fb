"""bigseq package metadata. ``BIGSEQ_BUILD_OPS=1 pip install .`` also builds the CUDA ops."""

from setuptools import find_packages, setup

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
    ],
    extras_require={
        "triton": ["triton>=3.0"],
        "dev": ["pytest", "pytest-timeout", "ruff", "tensorboard"],
    },
    entry_points={"console_scripts": ["bigseq = bigseq.cli.main:main"]},
)
