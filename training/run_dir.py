"""The run folder ``<dataset.save_dir>/<exp_name>/``: who may write it (a lock), whether a run may start in it, and
how a run in it stops early (StopRequest: Ctrl-C / SIGTERM asks it to stop at its next safe point and save last.pt).

One training run holds ``run.lock`` for its whole life: an ``flock`` on the file, which the kernel releases when
the process ends however it ends, and ``pid host`` written in it to name the holder. A second run into the same
folder finds the flock taken and is refused, naming the holder. A lock file whose flock nobody holds was left by a
run that ended without removing it: it is taken over with a warning, in one atomic step (taking the flock), so two
processes can never both take it over, and a reused pid cannot make it look held. A folder that already holds a run (last.pt or best.pt) is continued with ``--resume`` or started
over with ``--overwrite``, which first removes the files an earlier run wrote.
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import socket
import threading
from contextlib import suppress
from pathlib import Path

from training.log import get_logger
from utils.atomic import make_output_dir, output_error

LOCK_NAME = "run.lock"
# Files and folders a training run writes into its folder (train.py --help lists them); --overwrite removes these.
RUN_OUTPUTS = ("config.yaml", "best.pt", "last.pt", "metrics.csv", "metrics.json", "loss_ce.png",
               "loss_distillation.png", "accuracy.png", "test_results.json", "test_results.md",
               "test_predictions.json", "train.log", "tensorboard")
CHECKPOINTS = ("last.pt", "best.pt")


class RunFolderError(RuntimeError):
    """The run folder is in use by another run, holds a run this command would replace, or has nothing to resume."""


def check_start(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Raise RunFolderError unless this command may start in ``run_dir`` (nothing is written here)."""
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite contradict each other: give one of them")
    has_run = any((run_dir / name).exists() for name in CHECKPOINTS)
    if resume and not (run_dir / "last.pt").is_file():
        raise RunFolderError(f"--resume: {run_dir / 'last.pt'} does not exist (nothing to resume); run without "
                             "--resume" + (" and with --overwrite to start over" if has_run else ""))
    if has_run and not resume and not overwrite:
        raise RunFolderError(f"{run_dir} already holds a run: use --resume to continue it or --overwrite to start "
                             "over (or another --exp_name)")


def _parse_holder(text: str) -> tuple[int | None, str]:
    """(pid, host) written in a lock file; (None, '') if unreadable."""
    try:
        pid, host = text.split()[:2]
        return int(pid), host
    except ValueError:
        return None, ""


_NO_FLOCK = (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL)  # flock unsupported by the file system


class _FlockUnsupported(Exception):
    pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


class RunLock:
    """``run.lock`` in a run folder, held by an ``flock`` for the life of this process's run; ``release`` removes
    it."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.created_dir = False
        self.held = False
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Create the folder (if needed) and take the lock; RunFolderError if another live process holds it."""
        self.created_dir = not self.run_dir.exists()
        make_output_dir(self.run_dir)
        for _ in range(20):  # retries only when a holder removed the file between our open and our flock
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise output_error(self.path, e) from None
            try:
                if self._lock_current_file(fd):
                    self._fd, fd = fd, None
                    self.held = True
                    return self
            except _FlockUnsupported as e:
                os.close(fd)
                fd = None
                return self._acquire_by_pid(str(e))
            finally:
                if fd is not None:
                    os.close(fd)
        raise RunFolderError(f"{self.path}: could not take the lock (other runs keep taking and removing it)")

    def _lock_current_file(self, fd: int) -> bool:
        """Take the flock of ``fd`` and write this process as holder; False when the file was removed or replaced
        meanwhile (try again), RunFolderError when another process holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if not isinstance(e, BlockingIOError) and e.errno in _NO_FLOCK:
                raise _FlockUnsupported(e.strerror) from None
            if not isinstance(e, BlockingIOError):
                raise output_error(self.path, e) from None
            pid, host = _parse_holder(os.pread(fd, 256, 0).decode("utf-8", "replace"))
            holder = f"process {pid} on host {host}" if pid is not None else "another process"
            raise RunFolderError(f"{self.run_dir} is in use by {holder} (lock {self.path}); wait for it to finish or "
                                 "use another --exp_name") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if not same:
            return False
        previous = os.pread(fd, 256, 0).decode("utf-8", "replace")
        pid, host = _parse_holder(previous)
        if previous.strip() and pid is None:
            raise RunFolderError(f"{self.path} exists but does not name its holder; if no run is writing "
                                 f"{self.run_dir}, delete it")
        if pid is not None and host != socket.gethostname():
            raise RunFolderError(f"{self.run_dir} is in use by process {pid} on host {host} ({self.path}); if that "
                                 "run is gone, delete the lock file")
        if pid is not None:
            get_logger().warning(f"{self.path}: taking over the lock of process {pid}, which no longer holds it")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        except OSError as e:
            raise output_error(self.path, e) from None
        return True

    def _acquire_by_pid(self, reason: str) -> "RunLock":
        """The lock on a file system without flock (e.g. Lustre mounted without it): the file created exclusively,
        a stale one (its pid gone, same host) removed first. Two runs starting at the very same moment over a stale
        lock could both take it here; a warning says so."""
        get_logger().warning(f"{self.path}: this file system has no file locks ({reason}); the lock falls back to "
                             "the pid written in it (not atomic when a stale lock is taken over)")
        with suppress(OSError):
            if self.path.stat().st_size == 0:
                self.path.unlink()  # the empty file our flock attempt created
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, host = _parse_holder(self.path.read_text(errors="replace"))
                if pid is None or host != socket.gethostname() or _pid_alive(pid):
                    raise RunFolderError(f"{self.run_dir} is in use by process {pid} on host {host} (lock "
                                         f"{self.path}); if that run is gone, delete the lock file") from None
                get_logger().warning(f"{self.path}: taking over the lock of process {pid}, which no longer runs")
                self.path.unlink(missing_ok=True)
                continue
            except OSError as e:
                raise output_error(self.path, e) from None
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {socket.gethostname()}\n")
            self.held = True
            return self
        raise RunFolderError(f"{self.path}: could not take the lock (another run took it at the same time)")

    def release(self) -> None:
        """Remove the lock file (while still holding its flock, so that nobody takes a file about to vanish) and
        the folder, if this run created it and left it empty."""
        if not self.held:
            return
        self.held = False
        if self._fd is None:  # taken without flock: remove the file only if it still names this process
            if _parse_holder(self.path.read_text(errors="replace") if self.path.exists() else "")[0] == os.getpid():
                self.path.unlink(missing_ok=True)
        else:
            try:
                self.path.unlink(missing_ok=True)
            finally:
                os.close(self._fd)
                self._fd = None
        if self.created_dir and self.run_dir.is_dir() and not any(self.run_dir.iterdir()):
            self.run_dir.rmdir()


def clear_run_outputs(run_dir: Path) -> list[str]:
    """Remove the files an earlier run wrote into ``run_dir`` (RUN_OUTPUTS); returns their names."""
    removed = []
    for name in RUN_OUTPUTS:
        path = run_dir / name
        try:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
        except OSError as e:
            raise output_error(path, e) from None
        removed.append(name)
    return removed


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
