"""tqdm progress bars (rate and ETA) that stay short in log files."""
from __future__ import annotations

import sys

from tqdm import tqdm

LOG_FILE_REFRESH_SECONDS = 30.0


def progress(*args, **kwargs) -> tqdm:
    """``tqdm(*args, **kwargs)``; when stderr is not a terminal (a log file, CI), it refreshes at most every 30 s."""
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", LOG_FILE_REFRESH_SECONDS)
    return tqdm(*args, **kwargs)
