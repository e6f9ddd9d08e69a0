"""A run's config, loaded and checked as a whole: base.yml's keys (utils/config.py) plus the sections their owners
check, put together here.

- ``model``: the registered model's typed config (model/registry.py);
- ``losses`` and ``distill.losses``: registered loss terms and their parameters, and the older alias keys
  ``train.alpha`` ... (model/losses.py); these two in model/schema.py;
- ``dataset``: its keys' choices, optional strings and ranges (preprocess/datasets/files.py), and
  ``model.head: auto`` becomes the answer type of the dataset ``dataset.name`` names
  (:func:`training.run_settings.resolve_head`, the one place that resolves the head).

Every command that reads a run config loads it with :func:`load_config` from here.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from easydict import EasyDict

from model.schema import MODEL_SCHEMA
from preprocess.datasets.files import DATASET_SCHEMA
from training.run_settings import resolve_head
from utils import config

RUN_SCHEMA = config.combine(MODEL_SCHEMA, DATASET_SCHEMA,
                            config.Schema(resolvers=(partial(resolve_head, check=False),)))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                data: dict | None = None) -> EasyDict:
    """The run config: ``configs/base.yml``, then ``path`` (with its ``_base_`` chain) or ``data`` (e.g. the config
    stored in a checkpoint), then ``overrides``, every section checked by its owner (utils.config.load_config)."""
    return config.load_config(path, overrides, data, RUN_SCHEMA)


def set_key(cfg, dotted: str, value) -> EasyDict:
    """A copy of the run config ``cfg`` with one key set, checked as an override would be."""
    return config.set_key(cfg, dotted, value, RUN_SCHEMA)


def check_ranges(cfg) -> None:
    """ConfigError naming the first key of the run config ``cfg`` outside its range (utils.config.check_ranges)."""
    config.check_ranges(cfg, RUN_SCHEMA)


def save_config(cfg, path: str | Path) -> None:
    """Write the run config as YAML, atomically; the file reloads with :func:`load_config`."""
    config.save_config(cfg, path, RUN_SCHEMA)
