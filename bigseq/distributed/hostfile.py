"""Refuse a `deepspeed` launch whose hostfile grants fewer processes than it starts.

The runner is our grandparent process; its command line (Linux /proc) is the only
place the hostfile and --num_gpus/--num_nodes are known to a rank.
"""

from __future__ import annotations

import os

from bigseq.errors import BigseqError


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _parent_pid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def check_deepspeed_hostfile() -> None:
    """Refuse more processes than the hostfile grants.

    The `deepspeed` runner replaces each host's `slots=` by --num_gpus and keeps only as many
    hosts as exist when --num_nodes asks for more, so a wrong hostfile silently over-subscribes
    a node or runs a smaller job. Only the runner (our grandparent, Linux /proc) knows the
    hostfile, so its command line is parsed with DeepSpeed's own parser.
    """
    launcher = _parent_pid(os.getpid())
    if "deepspeed.launcher.launch" not in _cmdline(launcher):
        return
    runner_argv = _cmdline(_parent_pid(launcher))
    starts = [i for i, a in enumerate(runner_argv) if a.endswith(("deepspeed", "deepspeed.launcher.runner"))]
    if not starts:
        return
    from deepspeed.launcher import runner
    try:
        args = runner.parse_args(runner_argv[starts[0] + 1:])
        pool = runner.fetch_hostfile(args.hostfile)
    except (SystemExit, ValueError):
        return  # the runner itself accepted these, so leave them to it
    if not pool or args.include or args.exclude:
        return
    if args.num_nodes > len(pool):
        raise BigseqError(f"--num_nodes {args.num_nodes} but hostfile {args.hostfile} lists {len(pool)} host(s); "
                          f"add one line `<host> slots=<processes>` per node")
    hosts = list(pool.items())[:args.num_nodes if args.num_nodes > 0 else len(pool)]
    short = [(host, slots) for host, slots in hosts if args.num_gpus > slots]
    if short:
        host, slots = short[0]
        raise BigseqError(f"--num_gpus {args.num_gpus} but hostfile {args.hostfile} grants {host} only slots={slots}; "
                          f"lower --num_gpus or raise that host's slots")
