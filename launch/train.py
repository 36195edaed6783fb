"""Entry for `deepspeed launch/train.py ...`, `torchrun ... launch/train.py ...` and srun.

Same flags as `bigseq train`; the launchers' own `--local_rank` is accepted.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bigseq.distributed import name_accelerator, signal_latch  # noqa: E402

if __name__ == "__main__":
    with signal_latch.installed():  # a time-limit warning (SIGUSR1) during the imports must not kill the rank
        name_accelerator()  # before bigseq.cli.train imports deepspeed
        from bigseq.cli.train import cli_main
        from bigseq.distributed.launch_env import run_entry_point
        run_entry_point(cli_main)
