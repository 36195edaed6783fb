"""The only package (with checkpoint/) that talks to DeepSpeed."""

import os


def name_accelerator() -> None:
    """Without CUDA, DeepSpeed falls back to its CPU accelerator anyway but warns on every import;
    entry points call this before deepspeed is imported to name it up front."""
    if "DS_ACCELERATOR" not in os.environ:
        import torch
        if not torch.cuda.is_available():
            os.environ["DS_ACCELERATOR"] = "cpu"
