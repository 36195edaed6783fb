"""Per-process memory caps from a real memory cgroup, and the peak a process group reached.

A child of this process's own memory cgroup (v1 `memory.limit_in_bytes`, v2 `memory.max`);
a process started with `preexec_fn=cgroup.enter` runs inside it, so the kernel OOM-kills it
past the cap, as a cluster's job limit would. Resident memory, not address space, is what a
cgroup counts: torch reserves far more virtual memory than it touches, so RLIMIT_AS is no cap.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

from .runner import free_port

_ROOT = "/sys/fs/cgroup"


def _own_cgroup_dir() -> tuple[str, int] | None:
    """(directory of this process's memory cgroup, cgroup version), or None if there is none."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return os.path.join(_ROOT, "memory") + path, 1
    for line in lines:
        if line.startswith("0::") and os.path.exists(os.path.join(_ROOT, "cgroup.controllers")):
            return _ROOT + line[3:], 2
    return None


def unavailable_reason() -> str | None:
    """Why memory cgroups cannot be made here, or None when they can."""
    own = _own_cgroup_dir()
    if own is None:
        return "no memory cgroup controller in /proc/self/cgroup"
    try:
        MemoryCgroup().remove()
    except OSError as e:
        return f"cannot create a memory cgroup under {own[0]} ({e.strerror or e}); run as root"
    return None


class MemoryCgroup:
    def __init__(self, limit_bytes: int | None = None):
        own = _own_cgroup_dir()
        if own is None:
            raise OSError("no memory cgroup controller")
        parent, self.version = own
        self.path = os.path.join(parent, f"bigseq-test-{uuid.uuid4().hex[:8]}")
        os.mkdir(self.path)
        if limit_bytes is not None:
            self._write("memory.limit_in_bytes" if self.version == 1 else "memory.max", str(limit_bytes))
            if self.version == 2:  # no swapping around the cap where the machine has swap
                self._write("memory.swap.max", "0", missing_ok=True)

    def _write(self, name: str, value: str, missing_ok: bool = False) -> None:
        try:
            with open(os.path.join(self.path, name), "w") as f:
                f.write(value)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def _read(self, name: str) -> str:
        with open(os.path.join(self.path, name)) as f:
            return f.read()

    def enter(self) -> None:
        """For `preexec_fn`: move the starting process in before it execs."""
        self._write("cgroup.procs", str(os.getpid()))

    @property
    def peak_bytes(self) -> int:
        """Highest memory charged at once (resident + page cache + shared memory it touched)."""
        return int(self._read("memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"))

    @property
    def oom_kills(self) -> int:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        for line in self._read(name).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> None:
        """Kill what is left inside, then remove the cgroup."""
        for _ in range(50):
            pids = [int(p) for p in self._read("cgroup.procs").split()]
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)
        os.rmdir(self.path)

    def __enter__(self) -> MemoryCgroup:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def run_capped_ranks(cmd: list[str], nproc: int, limit_bytes: int | None, log_dir: str,
                     timeout: float = 600, env: dict | None = None) -> list[dict]:
    """Start `cmd` as ranks 0..nproc-1 of one job (the environment torchrun or srun would set),
    each in its own memory cgroup capped at `limit_bytes`. When one rank fails the others are
    stopped, as a launcher would. Returns per rank: returncode, peak_bytes, oom_kills, output."""
    port = free_port()
    ranks = []
    try:
        for rank in range(nproc):
            cgroup = MemoryCgroup(limit_bytes)
            out = open(os.path.join(log_dir, f"rank{rank}.log"), "w+")
            rank_env = {**os.environ, **(env or {}), "RANK": str(rank), "LOCAL_RANK": str(rank),
                        "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(port), "PYTHONUNBUFFERED": "1"}
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=rank_env,
                                    preexec_fn=cgroup.enter)
            ranks.append((proc, cgroup, out))
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p, _, _ in ranks):
            failed = any(p.returncode not in (None, 0) for p, _, _ in ranks)
            if failed or time.monotonic() > deadline:
                time.sleep(2)  # let the others print their own error first
                for p, _, _ in ranks:
                    if p.poll() is None:
                        p.kill()
                break
            time.sleep(0.2)
        results = []
        for proc, cgroup, out in ranks:
            proc.wait()
            out.seek(0)
            results.append({"returncode": proc.returncode, "peak_bytes": cgroup.peak_bytes,
                            "oom_kills": cgroup.oom_kills, "output": out.read()})
        return results
    finally:
        for proc, cgroup, out in ranks:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
            cgroup.remove()
