"""Suite-wide set-up: what bigseq's entry points do before anything imports deepspeed."""

from bigseq.distributed import name_accelerator
from bigseq.distributed.build_locks import pin_ninja


def pytest_configure(config):
    name_accelerator()  # CPU-only machines: DeepSpeed's CPU accelerator, named up front (no auto-detect warning)
    # every op build of the session, in bigseq's runs, DeepSpeed's own workers or SLURM jobs, with one ninja:
    # two would rebuild each op (~30 s) whenever builds alternated between them
    pin_ninja()
