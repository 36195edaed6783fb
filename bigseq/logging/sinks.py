"""Where stats records go besides the console: a JSON-lines file, TensorBoard, Weights & Biases."""

from __future__ import annotations

import json
import os
from typing import Any

from bigseq.errors import BigseqError
from bigseq.logging.format import stat_value

# one SummaryWriter per (logdir, tag) for the whole process: progress bars come and go
# every epoch, and a new writer would start a new event file each time
_TB_WRITERS: dict[tuple[str, str], Any] = {}
# one wandb run per process and project, for the same reason
_WANDB_RUNS: dict[str, Any] = {}


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


def _wandb():
    try:
        import wandb
    except ImportError:
        raise BigseqError("--wandb-project needs Weights & Biases; pip install 'bigseq[wandb]' (or pip install "
                          "wandb)") from None
    return wandb


def check_wandb_available() -> None:
    _wandb()


def write_wandb(project: str, tag: str, stats: dict[str, Any], step: int) -> None:
    """The numeric stats as ``<tag>/<stat>`` (fairseq's keys) at x = ``step`` (the update)."""
    if project not in _WANDB_RUNS:
        run = _wandb().init(project=project)
        run.define_metric("update")
        run.define_metric("*", step_metric="update")  # charts against updates, like the other sinks
        _WANDB_RUNS[project] = run
    values = {f"{tag}/{k}": v for k, v in ((k, stat_value(v)) for k, v in stats.items())
              if isinstance(v, (int, float)) and not isinstance(v, bool)}
    # not wandb's step=: it must grow with every call, and a valid record shares its update with train's
    _WANDB_RUNS[project].log({"update": step, **values})


def finish_wandb_runs() -> None:
    for run in _WANDB_RUNS.values():
        run.finish()
    _WANDB_RUNS.clear()
