"""Suite-wide set-up: what bigseq's entry points do before anything imports deepspeed."""

from bigseq.distributed import name_accelerator


def pytest_configure(config):
    name_accelerator()  # CPU-only machines: DeepSpeed's CPU accelerator, named up front (no auto-detect warning)
