"""The start-up latch: a signal before training starts is kept for StopRequest, and the process
gets its own handlers back afterwards."""

import os
import signal

import torch

from bigseq.distributed import signal_latch
from bigseq.distributed.preemption import StopRequest


def test_a_signal_during_start_up_becomes_the_stop_reason_and_handlers_come_back():
    assert signal_latch.SIGNALS == (signal.SIGUSR1,)  # SIGTERM during start-up keeps ending the process
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGTERM)}
    with signal_latch.installed():
        os.kill(os.getpid(), signal.SIGUSR1)
        stop = StopRequest(None, world_size=1, device=torch.device("cpu"))
        assert stop.should_stop() and stop.reason == "SIGUSR1"
        stop.restore()
        # restore hands back what was there before the latch, not the latch itself
        assert {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGTERM)} == before
    assert {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGTERM)} == before
    assert signal_latch.take() is None


def test_no_signal_no_stop():
    with signal_latch.installed():
        stop = StopRequest(None, world_size=1, device=torch.device("cpu"))
        try:
            assert not stop.should_stop() and stop.reason is None
        finally:
            stop.restore()
