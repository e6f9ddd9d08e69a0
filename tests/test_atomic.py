"""Atomic writes: the old file survives a failed write, and no temporary file is left behind."""
import errno
import os
import re

import pytest

from utils.atomic import OutputWriteError, atomic_write


def test_replaces_on_success_and_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "sub" / "file.txt"
    with atomic_write(path, "w") as f:
        f.write("first")
    assert path.read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_write(path, "w") as f:
            f.write("partial")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "first"
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.txt"]


def test_a_full_disk_names_the_path_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "file.txt"
    path.write_text("first")

    def no_space(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("utils.atomic.os.fsync", no_space)
    with pytest.raises(OutputWriteError, match=rf"^cannot write {re.escape(str(path))}: No space left on device$"):
        with atomic_write(path, "w") as f:
            f.write("second")
    assert path.read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["file.txt"]
