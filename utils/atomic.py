"""Atomic file writes: readers see the old file or the complete new one, never a partial one."""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager, suppress
from pathlib import Path


class OutputWriteError(OSError):
    """An output file or folder could not be written (read-only, full disk, a file in the way); names the path."""

    def __str__(self) -> str:
        return self.strerror  # the one-line message, without the "[Errno N]" prefix


def output_error(path: str | Path, error: OSError) -> OutputWriteError:
    """One-line OutputWriteError for ``error`` raised while writing ``path``."""
    reason = error.strerror or type(error).__name__
    return OutputWriteError(error.errno, f"cannot write {path}: {reason}")


def make_output_dir(path: str | Path) -> Path:
    """Create ``path`` (and its parents) as an output folder; OutputWriteError naming it if that fails."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(path, e) from None
    return path


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb"):
    """Open a temporary file beside ``path`` for writing. When the block ends normally the file is flushed, fsynced
    and renamed over ``path``; when it raises (or is interrupted) the temporary file is removed and ``path`` is
    left as it was. Creates the parent folder. An OSError of the file system (read-only folder, full disk) becomes
    OutputWriteError naming ``path``; a failure while cleaning up after an error (closing a file on a full disk,
    removing it from a read-only folder) never hides that first error."""
    path = Path(path)
    make_output_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        f = open(tmp, mode)
    except OSError as e:
        raise output_error(path, e) from None
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException as error:
        with suppress(OSError):
            f.close()
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, OutputWriteError):
            raise output_error(path, error) from None
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write` in text mode)."""
    with atomic_write(path, "w") as f:
        f.write(text)


def check_writable(path: str | Path, what: str) -> None:
    """OutputWriteError naming ``path`` and ``what`` (the flag or key behind it) unless a file can be written at
    ``path``: checked before long work whose results would otherwise be lost at the end. Creates the parent
    folder; a probe file is created and removed beside ``path``."""
    path = Path(path)
    if path.is_dir():
        raise OutputWriteError(errno.EISDIR, f"cannot write {path} ({what}): it is a folder")
    make_output_dir(path.parent)
    probe = path.with_name(f".{path.name}.{os.getpid()}.probe")
    try:
        with open(probe, "w"):
            pass
        probe.unlink()
    except OSError as e:
        raise OutputWriteError(e.errno, f"cannot write {path} ({what}): {e.strerror or type(e).__name__}") from None
