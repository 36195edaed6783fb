"""Where stats records go besides the console: a JSON-lines file and TensorBoard."""

from __future__ import annotations

import json
import os
from typing import Any

from bigseq.errors import BigseqError
from bigseq.logging.format import stat_value

# one SummaryWriter per (logdir, tag) for the whole process: progress bars come and go
# every epoch, and a new writer would start a new event file each time
_TB_WRITERS: dict[tuple[str, str], Any] = {}


def append_json_line(path: str, record: dict[str, Any]) -> None:
    """Append one record as a line; a whole line per write, so a crash never leaves half a record."""
    line = json.dumps(record) + "\n"
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        with open(path, "a") as f:
            f.write(line)
    except OSError as e:
        raise BigseqError(f"--log-file {path}: cannot write ({e.strerror}); choose a writable path") from None


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise BigseqError("--tensorboard-logdir needs TensorBoard; pip install tensorboard") from None
    return SummaryWriter


def check_tensorboard_available() -> None:
    _summary_writer_class()


def tensorboard_writer(logdir: str, tag: str):
    key = (os.path.abspath(logdir), tag or "")
    if key not in _TB_WRITERS:
        _TB_WRITERS[key] = _summary_writer_class()(os.path.join(logdir, tag or ""))
    return _TB_WRITERS[key]


def write_tensorboard(logdir: str, tag: str, stats: dict[str, Any], step: int) -> None:
    """Scalars under ``logdir/<tag>/`` (one run per tag, e.g. train, valid), one curve per stat."""
    writer = tensorboard_writer(logdir, tag)
    for key, value in stats.items():
        value = stat_value(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.add_scalar(key, value, step)
    writer.flush()


def close_tensorboard_writers() -> None:
    for writer in _TB_WRITERS.values():
        writer.close()
    _TB_WRITERS.clear()
