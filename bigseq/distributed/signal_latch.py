"""Catch SIGUSR1 from the first moment of `bigseq train`, before torch is imported.

Python's default action for SIGUSR1 is to die. Importing torch and DeepSpeed and building the
engine takes seconds to minutes, and SLURM's time-limit warning (`--signal=USR1@S`, checked about
every 30 s) can land in that window: without this latch the rank would die with exit 138 and the
job would fail instead of requeueing. The latch only remembers the signal; StopRequest takes it
over, so the run stops after its first update, saves and exits for a requeue.
SIGTERM keeps its default until training starts: a cancel or a launcher stopping its workers
during start-up should end the process at once, there is nothing to save yet.
"""

from __future__ import annotations

import contextlib
import signal
import threading

SIGNALS = (signal.SIGUSR1,)
_pending: str | None = None
_originals: dict = {}  # the handlers before install(), for whoever hands the signals back


def _remember(signum, frame) -> None:
    global _pending
    _pending = _pending or signal.Signals(signum).name


@contextlib.contextmanager
def installed():
    """Trap the signals for the block (main thread only: Python handles signals there), then give
    back the handlers from before, so a longer-lived process calling `main` keeps its own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _originals.update({sig: signal.signal(sig, _remember) for sig in SIGNALS})
    try:
        yield
    finally:
        for sig, handler in _originals.items():
            signal.signal(sig, handler)
        _originals.clear()


def original(sig, handler):
    """`handler` unless it is the latch's own, then the one the latch replaced."""
    return _originals.get(sig, handler) if handler is _remember else handler


def take() -> str | None:
    """The signal caught before training took over, if any (and forget it)."""
    global _pending
    name, _pending = _pending, None
    return name
