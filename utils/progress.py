"""Progress of long loops: a tqdm bar on a terminal, plain timed lines (rate and ETA) in logs.

When stderr is not a terminal (a log file, CI, ``nohup``), a bar's carriage returns and escape codes would glue its
updates onto other lines; there, :func:`progress` writes one ordinary line every ``KDVQA_PROGRESS_SECONDS`` seconds
(default 30) instead, e.g. ``epoch 3 train:  25% 50/200 [00:12<00:36,  4.07batch/s, loss=1.2]``, and a last line
when a loop that printed one ends. Loops shorter than the interval print nothing.
"""
from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm

PROGRESS_SECONDS_ENV = "KDVQA_PROGRESS_SECONDS"
DEFAULT_PROGRESS_SECONDS = 30.0
_WITH_TOTAL = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
_WITHOUT_TOTAL = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"


def progress_seconds() -> float:
    """Seconds between progress lines in logs: ``$KDVQA_PROGRESS_SECONDS``, else 30."""
    raw = os.environ.get(PROGRESS_SECONDS_ENV)
    if raw is None:
        return DEFAULT_PROGRESS_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        raise SystemExit(f"error: {PROGRESS_SECONDS_ENV}={raw!r} is not a number of seconds") from None
    if seconds <= 0:
        raise SystemExit(f"error: {PROGRESS_SECONDS_ENV}={raw!r} must be > 0")
    return seconds


class LogProgress:
    """The part of tqdm's interface the project uses (iterate, update, set_postfix, close, ``n``), printing a
    plain line to ``file`` at most every ``interval`` seconds."""

    def __init__(self, iterable=None, desc: str = "", total: float | None = None, initial: float = 0,
                 unit: str = "it", unit_scale: bool = False, unit_divisor: int = 1000, disable: bool = False,
                 interval: float = DEFAULT_PROGRESS_SECONDS, file=None, **_terminal_only):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.desc, self.total, self.n = iterable, desc, total, initial
        self.unit, self.unit_scale, self.unit_divisor = unit, unit_scale, unit_divisor
        self.disable, self.interval, self.file = disable, interval, file
        self.postfix = ""
        self.start = self.last_line = time.monotonic()
        self._start_n = initial
        self.lines_written = 0
        self._written_n = initial

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and now - self.last_line >= self.interval:
            self._write(now)

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        """A last line (the totals) for a loop that printed progress; a short loop stays silent."""
        if self.lines_written and self.n != self._written_n and not self.disable:
            self._write(time.monotonic())
        self.disable = True

    def line(self, now: float) -> str:
        """The progress line at time ``now`` (``time.monotonic()``): done/total, elapsed<ETA, rate, postfix."""
        elapsed = now - self.start
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else None
        return tqdm.format_meter(self.n, self.total, elapsed, prefix=self.desc, unit=self.unit,
                                 unit_scale=self.unit_scale, unit_divisor=self.unit_divisor, rate=rate,
                                 postfix=self.postfix or None,
                                 bar_format=_WITH_TOTAL if self.total else _WITHOUT_TOTAL)

    def _write(self, now: float) -> None:
        file = self.file or sys.stderr
        file.write(self.line(now) + "\n")
        file.flush()
        self.last_line, self._written_n = now, self.n
        self.lines_written += 1


def progress(*args, **kwargs):
    """``tqdm(*args, **kwargs)`` on a terminal; elsewhere a :class:`LogProgress` with the same arguments."""
    if sys.stderr.isatty():
        return tqdm(*args, **kwargs)
    return LogProgress(*args, interval=progress_seconds(), **kwargs)
