"""Where the data files are: config keys to paths, the check that a file exists, and DataError.

Files (docs/data_formats.md): ``dataset.*`` config keys name them; relative names resolve inside
``dataset.data_dir`` (itself relative to the repository root unless absolute).
"""
from __future__ import annotations

import os
from pathlib import Path

from utils.config import REPO_ROOT


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file and the config key."""


def resolve_path(value: str | Path, base: Path) -> Path:
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else base / path


def data_dir(cfg) -> Path:
    return resolve_path(cfg.dataset.data_dir, REPO_ROOT)


def dataset_path(cfg, key: str) -> Path:
    """The file named by config key ``dataset.<key>``, resolved inside ``dataset.data_dir``."""
    return resolve_path(cfg.dataset[key], data_dir(cfg))


def require_file(path: Path, key: str) -> Path:
    if not path.is_file():
        hint = "" if path.parent.is_dir() else f" (folder {path.parent} does not exist either)"
        raise DataError(f"file not found: {path}{hint}; set by config key '{key}'")
    return path
