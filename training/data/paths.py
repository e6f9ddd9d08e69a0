"""DataError, the error of a missing or malformed data file, and the check that a file exists.

Which file a config key names (``dataset.*`` keys, ``dataset.data_dir``, the dataset's default names) is the
dataset section owner's job: preprocess/datasets/files.py.
"""
from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file and the config key."""


def require_file(path: Path, key: str) -> Path:
    if not path.is_file():
        hint = "" if path.parent.is_dir() else f" (folder {path.parent} does not exist either)"
        raise DataError(f"file not found: {path}{hint}; set by config key '{key}'")
    return path
