"""Entry for `deepspeed launch/train.py ...`, `torchrun ... launch/train.py ...` and srun.

Same flags as `bigseq train`; the launchers' own `--local_rank` is accepted.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bigseq.cli.train import cli_main  # noqa: E402
from bigseq.distributed.launch_env import run_entry_point  # noqa: E402

if __name__ == "__main__":
    run_entry_point(cli_main)
