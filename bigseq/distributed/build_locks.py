"""JIT builds of DeepSpeed's ops: refuse to start on a lock left by a killed build; always build with one ninja.

torch's cpp_extension (which DeepSpeed uses for its CPU ops: shared-memory
collectives, CPU Adam) guards each build folder with a `lock` file and waits for
it to go away, with no timeout and no message. A build killed mid-way (a job
cancelled while compiling, an OOM kill) leaves the file behind, and every later
run then hangs at start-up forever. A build takes about a minute, so a lock in a
folder where nothing has changed for ten minutes is one nobody will release.
"""

from __future__ import annotations

import os
import sys
import time

from bigseq.errors import BigseqError

STALE_AFTER_S = 600.0


def extension_roots() -> list[str]:
    """Folders that hold one build folder per op (torch adds a per-accelerator level by default)."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        return [root]
    from torch.utils.cpp_extension import get_default_build_root
    base = get_default_build_root()
    try:
        names = sorted(os.listdir(base))
    except OSError:  # no builds yet, or unreadable
        return []
    return [os.path.join(base, name) for name in names if os.path.isdir(os.path.join(base, name))]


def _stale_lock_age(folder: str, now: float) -> float | None:
    """Seconds since `folder`'s lock was made, if nothing in the folder changed for STALE_AFTER_S."""
    try:
        last_change = max(entry.stat().st_mtime for entry in os.scandir(folder))
        lock_made = os.path.getmtime(os.path.join(folder, "lock"))
    except (OSError, ValueError):  # no lock, unreadable, or another rank's build finished meanwhile
        return None
    return now - lock_made if now - last_change > STALE_AFTER_S else None


def check_build_locks(now: float | None = None) -> None:
    now = time.time() if now is None else now
    for root in extension_roots():
        try:
            names = sorted(os.listdir(root))
        except OSError:  # missing or unreadable: nothing of ours to wait on there
            continue
        for name in names:
            lock = os.path.join(root, name, "lock")
            age = _stale_lock_age(os.path.dirname(lock), now)
            if age is not None:
                minutes = age / 60
                raise BigseqError(f"{lock} was left {minutes:.0f} min ago by a build of the '{name}' op that was "
                                  f"killed mid-way, and every run would wait on it forever; remove it "
                                  f"(rm {lock}) and run again")


def pin_ninja(env=os.environ) -> None:
    """Build with the ninja installed beside this Python, whatever PATH finds first.

    torch runs the `ninja` on PATH, and ninja 1.12 changed how it hashes build commands: where a
    machine has two (a distribution's ninja and the pip package DeepSpeed installs beside the
    interpreter), each takes the other's cached build for a changed command and rebuilds the op,
    ~30 s per op on 2 cores, every time runs alternate between them (a shell with the venv
    activated and one without, a SLURM job with another PATH). Putting the interpreter's folder
    first, as activating the venv does, makes every run of this Python agree.
    """
    here = os.path.dirname(sys.executable)
    path = env.get("PATH", "")
    if os.path.isfile(os.path.join(here, "ninja")) and path.split(os.pathsep)[0] != here:
        env["PATH"] = here + os.pathsep + path if path else here
