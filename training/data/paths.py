"""Where the data files are: config keys to paths, the check that a file exists, and DataError.

Files (docs/data_formats.md): ``dataset.*`` config keys name them; relative names resolve inside
``dataset.data_dir`` (itself relative to the repository root unless absolute). A file key set to null means the
dataset's default name (``<file_prefix>_vocab.json``, ``<file_prefix>_<split>_questions.pt``,
``<file_prefix>_appearance_feat.h5``, ``<file_prefix>_motion_feat.h5``); ``dataset.data_dir: null`` means
``data/<name>``. ``dataset.name`` (and ``dataset.question_type`` for TGIF-QA) select a registered dataset
(preprocess/datasets/).
"""
from __future__ import annotations

import os
from pathlib import Path

from utils.config import ConfigError, REPO_ROOT

# dataset.<key> -> its default file name after the dataset's file prefix
DEFAULT_FILE_SUFFIXES = {"vocab_json": "_vocab.json", "train_question_pt": "_train_questions.pt",
                         "val_question_pt": "_val_questions.pt", "test_question_pt": "_test_questions.pt",
                         "appearance_feat": "_appearance_feat.h5", "motion_feat": "_motion_feat.h5"}


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file and the config key."""


def resolve_path(value: str | Path, base: Path) -> Path:
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else base / path


def dataset_spec(cfg):
    """The registered dataset ``dataset.name`` names (with ``dataset.question_type``), a
    preprocess.datasets.Dataset; ConfigError listing the registered names (or the question types) otherwise."""
    from preprocess.datasets import DatasetLayoutError, dataset_names, get_dataset
    name, task = cfg.dataset.name, cfg.dataset.get("question_type")
    if not isinstance(name, str) or name.lower() not in dataset_names(with_aliases=True):
        raise ConfigError(f"config key 'dataset.name' must name a registered dataset, got {name!r} (registered: "
                          f"{', '.join(dataset_names())})")
    try:
        return get_dataset(name, task)
    except DatasetLayoutError as e:
        raise ConfigError(f"config key 'dataset.question_type': {e}") from None


def data_dir(cfg) -> Path:
    value = cfg.dataset.data_dir
    if value is None:
        return REPO_ROOT / "data" / dataset_spec(cfg).name
    return resolve_path(value, REPO_ROOT)


def dataset_path(cfg, key: str) -> Path:
    """The file named by config key ``dataset.<key>``, resolved inside ``dataset.data_dir``; null = the dataset's
    default name (module docstring)."""
    value = cfg.dataset[key]
    if value is None:
        value = dataset_spec(cfg).file_prefix + DEFAULT_FILE_SUFFIXES[key]
    return resolve_path(value, data_dir(cfg))


def require_file(path: Path, key: str) -> Path:
    if not path.is_file():
        hint = "" if path.parent.is_dir() else f" (folder {path.parent} does not exist either)"
        raise DataError(f"file not found: {path}{hint}; set by config key '{key}'")
    return path
