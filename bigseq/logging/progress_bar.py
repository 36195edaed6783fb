"""Progress bars in the style of fairseq's: tqdm, simple, json, none.

A bar wraps the iterable of one epoch (one item per update). ``log(stats, tag,
step)`` reports a log interval; ``print(stats, tag, step)`` a summary (end of
epoch, validation). Every record also goes to ``log_file`` (JSON lines, same
content as the json format) and to TensorBoard (``tensorboard_logdir/<tag>``,
x axis = ``step``) and Weights & Biases (``wandb_project``, keys ``<tag>/<stat>``).
Only the process with ``enabled=True`` (rank 0) writes.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Iterator

from bigseq.errors import BigseqError
from bigseq.logging import sinks
from bigseq.logging.format import format_pair, json_value

FORMATS = ("tqdm", "simple", "json", "none")


def progress_bar(iterable: Iterable, *, log_format: str | None = None, log_interval: int = 100,
                 epoch: int | None = None, prefix: str | None = None, total: int | None = None,
                 log_file: str | None = None, tensorboard_logdir: str | None = None,
                 wandb_project: str | None = None, enabled: bool = True, stream=None,
                 start: int = 0) -> "BaseProgressBar":
    """A progress bar over ``iterable``; ``log_format=None``: tqdm on a terminal, simple otherwise.

    ``start``: items already done before ``iterable`` begins (an epoch resumed mid-way)."""
    if not enabled:
        return BaseProgressBar(iterable, epoch=epoch, prefix=prefix, total=total, start=start)
    if log_format is None:
        log_format = "tqdm" if sys.stderr.isatty() else "simple"
    if log_format not in FORMATS:
        raise BigseqError(f"--log-format {log_format}: unknown; choose one of {', '.join(FORMATS)}")
    if tensorboard_logdir:
        sinks.check_tensorboard_available()
    if wandb_project:
        sinks.check_wandb_available()
    cls = {"tqdm": TqdmProgressBar, "simple": SimpleProgressBar, "json": JsonProgressBar,
           "none": BaseProgressBar}[log_format]
    return cls(iterable, epoch=epoch, prefix=prefix, total=total, log_interval=log_interval,
               log_file=log_file, tensorboard_logdir=tensorboard_logdir, wandb_project=wandb_project,
               stream=stream, start=start)


class BaseProgressBar:
    """Iterates and feeds the log file / TensorBoard; prints nothing (the 'none' format)."""

    def __init__(self, iterable: Iterable, *, epoch: int | None = None, prefix: str | None = None,
                 total: int | None = None, log_interval: int = 100, log_file: str | None = None,
                 tensorboard_logdir: str | None = None, wandb_project: str | None = None, stream=None,
                 start: int = 0):
        self.iterable = iterable
        self.epoch, self.prefix, self.log_interval = epoch, prefix, log_interval
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n = start  # items done so far: updates done in this epoch
        self.log_file, self.tensorboard_logdir, self.wandb_project = log_file, tensorboard_logdir, wandb_project
        self._stream = stream

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stdout

    def __len__(self) -> int:
        return self.total if self.total is not None else len(self.iterable)

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            self.n += 1
            yield item

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # reporting ----------------------------------------------------------------
    def log(self, stats: dict[str, Any], tag: str | None = None, step: int | None = None) -> None:
        """Stats of one log interval."""
        record = self.record(stats, tag, step, inner=True)
        self._to_sinks(record, stats, tag, step)
        self._show_interval(stats, record)

    def print(self, stats: dict[str, Any], tag: str | None = None, step: int | None = None) -> None:
        """A summary (end of epoch, validation)."""
        record = self.record(stats, tag, step, inner=False)
        self._to_sinks(record, stats, tag, step)
        self._show_summary(stats, record)

    def close(self) -> None:
        pass

    def _show_interval(self, stats, record) -> None:
        pass

    def _show_summary(self, stats, record) -> None:
        pass

    # shared formatting ---------------------------------------------------------
    def record(self, stats: dict[str, Any], tag: str | None, step: int | None, *, inner: bool) -> dict[str, Any]:
        """The JSON record of a log/print call (the json format's line and the log file's)."""
        head: dict[str, Any] = {"tag": tag} if tag else {}
        if self.epoch is not None:
            head["epoch"] = self.epoch
        if inner:
            head["update"] = self.n
        if step is not None:
            head["step"] = step
        return {**head, **{k: json_value(v) for k, v in stats.items() if k not in head}}

    def line_prefix(self, *, inner: bool) -> list[str]:
        parts = [f"epoch {self.epoch:03d}"] if self.epoch is not None else []
        if self.prefix:
            parts.append(self.prefix)
        if inner:
            parts.append(f"update {self.n}/{self.total}" if self.total is not None else f"update {self.n}")
        return parts

    @staticmethod
    def stats_parts(stats: dict[str, Any]) -> list[str]:
        return [format_pair(k, v) for k, v in stats.items()]

    def _to_sinks(self, record, stats, tag, step) -> None:
        if self.log_file:
            sinks.append_json_line(self.log_file, record)
        if self.tensorboard_logdir:
            sinks.write_tensorboard(self.tensorboard_logdir, tag or "train", stats,
                                    step if step is not None else self.n)
        if self.wandb_project:
            sinks.write_wandb(self.wandb_project, tag or "train", stats, step if step is not None else self.n)

    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


class SimpleProgressBar(BaseProgressBar):
    """One line per log interval: ``epoch 001 | update 10/200 | loss 5.12 | ...``."""

    def _show_interval(self, stats, record) -> None:
        self._write(" | ".join(self.line_prefix(inner=True) + self.stats_parts(stats)))

    def _show_summary(self, stats, record) -> None:
        self._write(" | ".join(self.line_prefix(inner=False) + self.stats_parts(stats)))


class JsonProgressBar(BaseProgressBar):
    """One JSON object per line."""

    def _show_interval(self, stats, record) -> None:
        self._write(json.dumps(record))

    _show_summary = _show_interval


class TqdmProgressBar(BaseProgressBar):
    """A live bar on stderr; interval stats as its postfix, summaries as lines above it."""

    def __init__(self, iterable: Iterable, **kwargs):
        super().__init__(iterable, **kwargs)
        from tqdm import tqdm
        desc = " | ".join(self.line_prefix(inner=False)) or None
        self.bar_file = self._stream if self._stream is not None else sys.stderr
        self.bar = tqdm(total=self.total, initial=self.n, desc=desc, leave=False, dynamic_ncols=True,
                        file=self.bar_file)

    def __iter__(self) -> Iterator:
        for item in super().__iter__():
            self.bar.update(1)
            yield item

    def _show_interval(self, stats, record) -> None:
        self.bar.set_postfix_str(" | ".join(self.stats_parts(stats)), refresh=True)

    def _show_summary(self, stats, record) -> None:
        # written above the bar, which is redrawn below it
        self.bar.write(" | ".join(self.line_prefix(inner=False) + self.stats_parts(stats)), file=self.bar_file)

    def close(self) -> None:
        self.bar.close()
