"""Atomic file writes: readers see the old file or the complete new one, never a partial one."""
from __future__ import annotations

import os
from contextlib import contextmanager, suppress
from pathlib import Path


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb"):
    """Open a temporary file beside ``path`` for writing. When the block ends normally the file is flushed, fsynced
    and renamed over ``path``; when it raises (or is interrupted) the temporary file is removed and ``path`` is
    left as it was. Creates the parent folder. A failure while cleaning up after an error (closing a file on a full
    disk, removing it from a read-only folder) never hides that first error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    f = open(tmp, mode)
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            f.close()
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
