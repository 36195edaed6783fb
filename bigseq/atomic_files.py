"""Files written whole or not at all: a temporary file in the same folder, fsync, then rename(2).

A reader (a resumed run, a data loader) never sees half a file, whatever kills the writer.
"""

from __future__ import annotations

import json
import os
import tempfile


def atomic_write_text(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str, obj, *, indent: int = 1, sort_keys: bool = True) -> None:
    """JSON atomically; values JSON does not know (paths, dtypes) are written as their str()."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=str) + "\n")
