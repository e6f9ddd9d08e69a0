"""The config's ``dataset`` section: its checks (:data:`DATASET_SCHEMA`), the registered dataset it names and where
its data files are.

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

from preprocess.datasets import DatasetLayoutError, dataset_names, get_dataset
from utils.config import REPO_ROOT, ConfigError, Schema, non_negative
from utils.text import short_repr

# The dataset section's keys beyond base.yml's types (utils.config.Schema): the values features_in_memory takes, the
# keys that are null by default but name a file, folder or question type when set, and the ranges of the numbers.
DATASET_SCHEMA = Schema(
    choices={"dataset.features_in_memory": ("auto", True, False)},
    optional_strings=frozenset(f"dataset.{key}" for key in ("question_type", "data_dir", "appearance_feat",
                                                            "motion_feat", "vocab_json", "train_question_pt",
                                                            "val_question_pt", "test_question_pt")),
    ranges={"dataset.num_workers": (non_negative, ">= 0"), "dataset.questions_per_video": (non_negative, ">= 0")})

# dataset.<key> -> its default file name after the dataset's file prefix
DEFAULT_FILE_SUFFIXES = {"vocab_json": "_vocab.json", "train_question_pt": "_train_questions.pt",
                         "val_question_pt": "_val_questions.pt", "test_question_pt": "_test_questions.pt",
                         "appearance_feat": "_appearance_feat.h5", "motion_feat": "_motion_feat.h5"}


def resolve_path(value: str | Path, base: Path) -> Path:
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else base / path


def dataset_spec(cfg):
    """The registered dataset ``dataset.name`` names (with ``dataset.question_type``), a
    preprocess.datasets.Dataset; ConfigError listing the registered names (or the question types) otherwise."""
    section = cfg["dataset"]
    name, task = section.get("name"), section.get("question_type")
    if not isinstance(name, str) or name.lower() not in dataset_names(with_aliases=True):
        raise ConfigError(f"config key 'dataset.name' must name a registered dataset, got {short_repr(name)} (registered: "
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
