"""The run folder ``<dataset.save_dir>/<exp_name>/``: who may write it (a lock), and whether a run may start in it.

One training run holds ``run.lock`` (``pid host`` of its holder) for its whole life; a second run into the same
folder is refused, naming the holder. A lock left by a process that no longer runs (same host) is taken over
with a warning. A folder that already holds a run (last.pt or best.pt) is continued with ``--resume`` or started
over with ``--overwrite``, which first removes the files an earlier run wrote.
"""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from training.log import get_logger
from utils.atomic import make_output_dir, output_error

LOCK_NAME = "run.lock"
# Files and folders a training run writes into its folder (train.py --help lists them); --overwrite removes these.
RUN_OUTPUTS = ("config.yaml", "best.pt", "last.pt", "metrics.csv", "metrics.json", "loss_ce.png",
               "loss_distillation.png", "accuracy.png", "test_results.json", "test_results.md", "train.log",
               "tensorboard")
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def _read_holder(path: Path) -> tuple[int | None, str]:
    """(pid, host) written in a lock file; (None, '') if unreadable."""
    try:
        pid, host = path.read_text().split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None, ""


class RunLock:
    """``run.lock`` in a run folder, created exclusively; ``release`` removes it if this process still holds it."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.created_dir = False
        self.held = False

    def acquire(self) -> "RunLock":
        """Create the folder (if needed) and the lock; RunFolderError if a live process holds it."""
        self.created_dir = not self.run_dir.exists()
        make_output_dir(self.run_dir)
        me = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(2):  # a second try after taking over a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            except OSError as e:
                raise output_error(self.path, e) from None
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self.held = True
            return self
        raise RunFolderError(f"{self.path}: could not take the lock (another run took it at the same time)")

    def _take_over_if_stale(self) -> None:
        pid, host = _read_holder(self.path)
        if pid is None:
            raise RunFolderError(f"{self.path} exists but does not name its holder; if no run is writing "
                                 f"{self.run_dir}, delete it")
        if host != socket.gethostname():
            raise RunFolderError(f"{self.run_dir} is in use by process {pid} on host {host} ({self.path}); if that "
                                 "run is gone, delete the lock file")
        if _pid_alive(pid):
            raise RunFolderError(f"{self.run_dir} is in use by process {pid} (lock {self.path}); wait for it to "
                                 "finish or use another --exp_name (if that process is no training run, delete the "
                                 "lock file)")
        get_logger().warning(f"{self.path}: taking over the lock of process {pid}, which no longer runs")
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock (and the folder, if this run created it and left it empty)."""
        if not self.held:
            return
        self.held = False
        if _read_holder(self.path)[0] == os.getpid():
            self.path.unlink(missing_ok=True)
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
