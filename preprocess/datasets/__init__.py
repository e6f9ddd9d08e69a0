"""One module per dataset: its raw layout, video lookup, QA parsing, question categories and answer type.

    from preprocess.datasets import get_dataset
    spec = get_dataset("tgif-qa", "action")     # a Dataset (preprocess/datasets/base.py)
    spec.answer_type, spec.category_names, spec.list_videos(Path("/data/TGIF-QA"))

The preprocessing CLIs, the data pipeline and the metrics read a dataset from here. Adding a dataset: a module in
this package with a :class:`Dataset` subclass decorated with :func:`register_dataset`, its import in ``_MODULES``
below, and its configs.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from preprocess.datasets.base import (ANSWER_TYPES, QA_SPLITS, Dataset, DatasetLayoutError, QAEntry,
                                      VideoEntry)

_MODULES = ("msvd_qa", "msrvtt_qa", "svqa", "tgif_qa", "nextqa")  # built-in dataset modules, imported on first use
_REGISTRY: dict[str, type] = {}
_ALIASES: dict[str, str] = {}


def register_dataset(cls: type) -> type:
    """Class decorator: make a :class:`Dataset` subclass available by its ``name`` and ``aliases``."""
    for spelling in (cls.name, *cls.aliases):
        known = _ALIASES.get(spelling.lower())
        if known is not None and _REGISTRY[known] is not cls:
            raise ValueError(f"dataset name {spelling!r} is already taken by {known!r}")
        _ALIASES[spelling.lower()] = cls.name
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    for module in _MODULES:
        importlib.import_module(f"preprocess.datasets.{module}")


def dataset_names(with_aliases: bool = False) -> list[str]:
    """The registered dataset names (and their aliases)."""
    _load_builtin()
    return sorted(_ALIASES if with_aliases else _REGISTRY)


def canonical_dataset_name(name: str) -> str:
    """``msvd``/``msvd-qa`` -> ``msvd-qa``, ...; DatasetLayoutError listing the known names otherwise."""
    _load_builtin()
    try:
        return _ALIASES[name.lower()]
    except KeyError:
        raise DatasetLayoutError(f"unknown dataset {name!r}: expected one of {', '.join(sorted(_ALIASES))}") from None


def get_dataset(name: str, task: str | None = None) -> Dataset:
    """The dataset ``name`` (any alias), for question type ``task`` where it has several."""
    return _REGISTRY[canonical_dataset_name(name)](task)


def list_videos(dataset: str, dataset_dir: str | Path, task: str | None = None) -> list[VideoEntry]:
    """Every video of ``dataset`` to extract, sorted by video_id (the row order of the feature files)."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise DatasetLayoutError(f"dataset folder not found: {dataset_dir}")
    spec = get_dataset(dataset, task)
    entries = spec.list_videos(dataset_dir)
    if not entries:
        raise DatasetLayoutError(f"{dataset_dir}: no videos found for {spec.file_prefix}")
    return entries


__all__ = ["ANSWER_TYPES", "QA_SPLITS", "Dataset", "DatasetLayoutError", "QAEntry", "VideoEntry",
           "canonical_dataset_name", "dataset_names", "get_dataset", "list_videos", "register_dataset"]
