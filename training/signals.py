"""Ctrl-C / SIGTERM during training: the first signal asks the run to stop at its next safe point (StopRequest)."""
from __future__ import annotations

import signal
import threading

from training.log import get_logger


class StopRequest:
    """Turns the first SIGINT/SIGTERM into a request to stop at the next safe point; a second Ctrl-C aborts."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, _frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        get_logger().warning(f"\n{signal.Signals(signum).name}: finishing the current step, then saving last.pt "
                             "(Ctrl-C again to abort without saving)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
