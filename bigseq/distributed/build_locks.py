"""Refuse to start on a JIT-build lock left by a killed build.

torch's cpp_extension (which DeepSpeed uses for its CPU ops: shared-memory
collectives, CPU Adam) guards each build folder with a `lock` file and waits for
it to go away, with no timeout and no message. A build killed mid-way (a job
cancelled while compiling, an OOM kill) leaves the file behind, and every later
run then hangs at start-up forever. A build takes about a minute, so a lock in a
folder where nothing has changed for ten minutes is one nobody will release.
"""

from __future__ import annotations

import os
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
    if not os.path.isdir(base):
        return []
    return [os.path.join(base, name) for name in sorted(os.listdir(base)) if os.path.isdir(os.path.join(base, name))]


def _last_change(folder: str) -> float:
    return max((entry.stat().st_mtime for entry in os.scandir(folder)), default=0.0)


def check_build_locks(now: float | None = None) -> None:
    now = time.time() if now is None else now
    for root in extension_roots():
        if not os.path.isdir(root):
            continue
        for name in sorted(os.listdir(root)):
            lock = os.path.join(root, name, "lock")
            if os.path.exists(lock) and now - _last_change(os.path.dirname(lock)) > STALE_AFTER_S:
                minutes = (now - os.path.getmtime(lock)) / 60
                raise BigseqError(f"{lock} was left {minutes:.0f} min ago by a build of the '{name}' op that was "
                                  f"killed mid-way, and every run would wait on it forever; remove it "
                                  f"(rm {lock}) and run again")
