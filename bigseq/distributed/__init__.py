"""The only package (with checkpoint/) that talks to DeepSpeed."""

import os


def _default_accelerator() -> None:
    # Without CUDA, DeepSpeed falls back to its CPU accelerator anyway but warns on every
    # import; naming it up front keeps every bigseq command's output clean.
    if "DS_ACCELERATOR" not in os.environ:
        import torch
        if not torch.cuda.is_available():
            os.environ["DS_ACCELERATOR"] = "cpu"


_default_accelerator()
