"""Run one training command and measure its steady-state tokens/s from its own log lines.

Every log line that carries an update count is stamped with the time it arrived on our pipe.
Updates are grouped into the same windows for every tool (every `log_interval` updates, after
`warmup`); each window gives a rate = its updates * tokens per update / its seconds, and the run's
figure is the median window. The machine may be shared: the CPU used by other processes is
measured per window, and when enough windows were quiet only those count.
Where a tool logs its own throughput (fairseq's "wps", bigseq's "tokens_per_s") the median of
those over the same windows is kept beside it as a cross-check.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from peers.cpu_load import machine_busy_s, session_cpu_s

_UPDATE_KEYS = ("num_updates", "update")
_RATE_KEYS = ("tokens_per_s", "wps", "tok/s", "tokens/s")
# how each tool states its model size: fairseq, bigseq, the HF runner
_PARAMETERS = re.compile(r"num\. shared model params: ([\d,]+)|([\d,]+) parameters|\"parameters\": (\d+)")
QUIET_LOAD_CORES = 0.2  # a window counts as quiet when other processes used less than this


@dataclass(kw_only=True)
class RunResult:
    name: str
    command: list[str]
    tokens_per_s: float | None = None  # median over the (quiet) timed windows
    mean_tokens_per_s: float | None = None  # all timed updates / all timed seconds
    self_reported_tokens_per_s: float | None = None
    timed_updates: int = 0
    other_load_cores: float | None = None  # CPU used by other processes while timed, in cores
    parameters: int | None = None  # the model size the tool reports, to show the models are the same
    error: str | None = None
    window_rates: list[float] = field(default_factory=list)
    window_loads: list[float] = field(default_factory=list)  # other processes' cores in each window
    windows_used: int = 0  # the quiet windows, or all of them when too few were quiet
    round: int = 1

    @property
    def all_quiet(self) -> bool:
        """Measured with no other process busy in any window."""
        return bool(self.window_loads) and max(self.window_loads) < QUIET_LOAD_CORES


@dataclass
class _Mark:
    """What we know at the arrival of the log line of one window boundary."""
    time_s: float
    machine_busy_s: float
    run_cpu_s: float
    reported_rate: float | None


def parse_record(line: str) -> dict | None:
    """The JSON object in a log line (fairseq puts a 'time | INFO | name |' prefix before it)."""
    start = line.find("{")
    if start < 0:
        return None
    try:
        record = json.loads(line[start:])
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _number(value) -> float | None:
    try:
        return float(value)  # fairseq writes its stats as strings
    except (TypeError, ValueError):
        return None


def update_of(record: dict) -> int | None:
    for key in _UPDATE_KEYS:
        value = _number(record.get(key))
        if value is not None and value == int(value) and value >= 1:
            return int(value)
    return None  # fairseq's "update" is a fractional epoch: only whole counts qualify


def run_and_measure(name: str, command: list[str], *, log_path: Path, warmup: int, log_interval: int,
                    tokens_per_update: int, timeout_s: float, env: dict[str, str] | None = None) -> RunResult:
    result = RunResult(name=name, command=command)
    marks: dict[int, _Mark] = {}  # window-boundary update -> first line logging it
    run_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    print(f"[run] {name}", flush=True)
    with open(log_path, "w") as log, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      text=True, env=run_env, start_new_session=True) as proc:
        # a hung run must not hang the benchmark: kill its whole process group at the deadline
        timer = threading.Timer(timeout_s, os.killpg, (proc.pid, signal.SIGKILL))
        timer.start()
        try:
            for line in proc.stdout:
                now = time.monotonic()
                log.write(line)
                if result.parameters is None and (size := _PARAMETERS.search(line)):
                    result.parameters = int(next(g for g in size.groups() if g).replace(",", ""))
                record = parse_record(line)
                update = update_of(record) if record else None
                if update is None or update in marks or update < warmup or update % log_interval:
                    continue
                rate = next((_number(record[k]) for k in _RATE_KEYS if k in record), None)
                marks[update] = _Mark(now, machine_busy_s(), session_cpu_s(proc.pid), rate)
            returncode = proc.wait()
        finally:
            timed_out = not timer.is_alive()
            timer.cancel()
    if timed_out:
        result.error = f"killed after {timeout_s:.0f}s"
    elif returncode != 0:
        result.error = f"exit {returncode}: {_last_error_line(log_path)}"
    _fill_throughput(result, marks, tokens_per_update)
    if result.tokens_per_s is None and result.error is None:
        result.error = f"no log line with an update count after update {warmup}"
    return result


def _fill_throughput(result: RunResult, marks: dict[int, _Mark], tokens_per_update: int) -> None:
    updates = sorted(marks)
    if len(updates) < 2:
        return
    first, last = marks[updates[0]], marks[updates[-1]]
    result.timed_updates = updates[-1] - updates[0]
    result.mean_tokens_per_s = result.timed_updates * tokens_per_update / (last.time_s - first.time_s)
    windows = list(zip(updates, updates[1:]))
    result.window_rates = [(u - p) * tokens_per_update / (marks[u].time_s - marks[p].time_s) for p, u in windows]
    result.window_loads = [_other_load(marks[p], marks[u]) for p, u in windows]
    # on a shared machine, judge by the windows nobody else was busy in, when there are enough of them
    quiet = [i for i, load in enumerate(result.window_loads) if load < QUIET_LOAD_CORES]
    used = quiet if len(quiet) >= max(3, len(windows) // 3) else list(range(len(windows)))
    result.windows_used = len(used)
    result.tokens_per_s = statistics.median(result.window_rates[i] for i in used)
    result.other_load_cores = statistics.mean(result.window_loads[i] for i in used)
    reported = [marks[u].reported_rate for _, u in windows]
    if all(reported):
        result.self_reported_tokens_per_s = statistics.median(reported[i] for i in used)


def _other_load(start: _Mark, end: _Mark) -> float:
    """Cores used by processes outside the run between two marks."""
    busy = end.machine_busy_s - start.machine_busy_s
    return max(0.0, busy - (end.run_cpu_s - start.run_cpu_s)) / (end.time_s - start.time_s)


def _last_error_line(log_path: Path) -> str:
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line[:200]
    return lines[-1][:200] if lines else "no output"
