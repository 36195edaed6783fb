"""The only package (with checkpoint/) that talks to DeepSpeed."""

import os


def name_accelerator() -> None:
    """Without CUDA, DeepSpeed falls back to its CPU accelerator anyway but warns on every import;
    entry points call this before deepspeed is imported to name it up front."""
    if "DS_ACCELERATOR" not in os.environ:
        import torch
        if not torch.cuda.is_available():
            os.environ["DS_ACCELERATOR"] = "cpu"


def quiet_deepspeed(is_main: bool) -> None:
    """DeepSpeed logs at INFO on every rank; users read bigseq's log instead (BIGSEQ_DS_VERBOSE=1: all of it)."""
    import logging

    from deepspeed.utils import logger as ds_logger
    ds_logger.setLevel(logging.WARNING if is_main else logging.ERROR)
    if os.environ.get("BIGSEQ_DS_VERBOSE"):
        ds_logger.setLevel(logging.INFO)
