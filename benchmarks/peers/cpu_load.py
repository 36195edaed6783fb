"""How much CPU other processes take while a run is timed (the machine may be shared).

Readings come from /proc: machine-wide busy time from /proc/stat, and the CPU time of the run's
own processes (its session: the run is started with start_new_session) from /proc/PID/stat.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU-seconds all cores have spent not idle since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _TICKS_PER_S


def session_cpu_s(session_id: int) -> float:
    """CPU-seconds used so far by the live processes of one session."""
    total = 0
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat_path.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        # after the ")" of the name: state(0) ppid(1) pgrp(2) session(3) ... utime(11) stime(12)
        if int(after_name[3]) == session_id:
            total += int(after_name[11]) + int(after_name[12])
    return total / _TICKS_PER_S


def other_load_cores(seconds: float = 2.0) -> float:
    """Cores' worth of CPU used by everything except this process over the next `seconds`."""
    own_before, busy_before, t_before = time.process_time(), machine_busy_s(), time.monotonic()
    time.sleep(seconds)
    own = time.process_time() - own_before
    return (machine_busy_s() - busy_before - own) / (time.monotonic() - t_before)


def wait_until_quiet(max_wait_s: float, threshold_cores: float = 0.25) -> float:
    """Wait (up to max_wait_s) until other processes use under threshold_cores; return the last reading."""
    deadline = time.monotonic() + max_wait_s
    load = other_load_cores()
    while load > threshold_cores and time.monotonic() < deadline:
        load = other_load_cores()
    return load
