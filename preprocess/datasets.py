"""Which videos a dataset has and where they are: ``video_id -> path`` for the published MSVD-QA and MSRVTT-QA layouts.

MSVD-QA: ``<dir>/YouTubeClips/<youtube name>.avi`` and ``<dir>/youtube_mapping.txt`` (``<youtube name> vid<N>`` per
line; video_id N). MSRVTT-QA: ``<dir>/TrainValVideo/video<N>.mp4`` and ``<dir>/TestVideo/video<N>.mp4``.
Both: ``{train,val,test}_qa.json`` lists of ``{"video_id": N, ...}``. The QA files may sit in ``<dir>`` itself or in
the HCRN-style ``<dir>/annotations/`` (HCRN: ``<dir>/<split>_qa.json``).

The videos to extract are those the QA files reference (every question then finds its row); without QA files, every
video of the mapping (MSVD-QA) or of the two video folders (MSRVTT-QA). A referenced video that has no file is still
listed (with the path where it was expected), so extraction records it as failed instead of dropping the row.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from preprocess.question_file import read_json

QA_SPLITS = ("train", "val", "test")
DATASET_ALIASES = {"msvd-qa": "msvd-qa", "msvd": "msvd-qa", "msrvtt-qa": "msrvtt-qa", "msrvtt": "msrvtt-qa"}
MSVD_MAPPING = "youtube_mapping.txt"
MSVD_VIDEO_DIR = "YouTubeClips"
MSRVTT_VIDEO_DIRS = {"train": "TrainValVideo", "val": "TrainValVideo", "test": "TestVideo"}


class DatasetLayoutError(ValueError):
    """The dataset folder does not have the published layout (the message names the file or folder)."""


@dataclass(frozen=True)
class VideoEntry:
    video_id: int
    path: Path


def canonical_dataset_name(name: str) -> str:
    """``msvd``/``msvd-qa`` -> ``msvd-qa``; ``msrvtt``/``msrvtt-qa`` -> ``msrvtt-qa``."""
    try:
        return DATASET_ALIASES[name.lower()]
    except KeyError:
        raise DatasetLayoutError(f"unknown dataset {name!r}: expected one of {sorted(DATASET_ALIASES)}") from None


def _qa_file(dataset_dir: Path, split: str) -> Path | None:
    for candidate in (dataset_dir / f"{split}_qa.json", dataset_dir / "annotations" / f"{split}_qa.json"):
        if candidate.is_file():
            return candidate
    return None


def read_qa_video_ids(dataset_dir: Path) -> dict[str, set[int]]:
    """Video ids referenced by each present ``<split>_qa.json`` (absent splits are left out)."""
    referenced = {}
    for split in QA_SPLITS:
        path = _qa_file(dataset_dir, split)
        if path is None:
            continue
        entries = read_json(path, DatasetLayoutError)
        if not isinstance(entries, list):
            raise DatasetLayoutError(f"{path}: expected a JSON list of questions, got {type(entries).__name__}")
        ids = set()
        for position, entry in enumerate(entries):
            try:
                ids.add(int(entry["video_id"]))
            except (KeyError, TypeError, ValueError):
                raise DatasetLayoutError(
                    f"{path}: entry {position} has no integer 'video_id': {entry!r:.200}") from None
        referenced[split] = ids
    return referenced


def read_msvd_mapping(path: Path) -> dict[int, str]:
    """``youtube_mapping.txt`` -> {video_id: youtube name}; each line ``<name> vid<N>``."""
    mapping = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DatasetLayoutError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    for line_number, line in enumerate(text.split("\n"), 1):
        fields = line.split()
        if not fields:
            continue
        match = re.fullmatch(r"vid(\d+)", fields[-1]) if len(fields) == 2 else None
        if match is None:
            raise DatasetLayoutError(f"{path}:{line_number}: expected '<youtube name> vid<N>', got {line.strip()!r}")
        mapping[int(match.group(1))] = fields[0]
    return mapping


def _list_msvd(dataset_dir: Path) -> list[VideoEntry]:
    mapping_path = dataset_dir / MSVD_MAPPING
    if not mapping_path.is_file():
        raise DatasetLayoutError(f"MSVD-QA needs {mapping_path} ('<youtube name> vid<N>' per line)")
    mapping = read_msvd_mapping(mapping_path)
    referenced = read_qa_video_ids(dataset_dir)
    video_ids = set().union(*referenced.values()) if referenced else set(mapping)
    video_dir = dataset_dir / MSVD_VIDEO_DIR
    entries = []
    for video_id in sorted(video_ids):
        # A referenced id absent from the mapping gets a path that cannot exist, so it is reported as failed.
        name = mapping.get(video_id, f"<vid{video_id} not in {MSVD_MAPPING}>")
        entries.append(VideoEntry(video_id, video_dir / f"{name}.avi"))
    return entries


def _list_msrvtt(dataset_dir: Path) -> list[VideoEntry]:
    referenced = read_qa_video_ids(dataset_dir)
    folders = [dataset_dir / name for name in dict.fromkeys(MSRVTT_VIDEO_DIRS.values())]
    if referenced:
        preferred = {}
        for split in QA_SPLITS:  # train/val ids look in TrainValVideo first, test ids in TestVideo first
            for video_id in referenced.get(split, ()):
                preferred.setdefault(video_id, dataset_dir / MSRVTT_VIDEO_DIRS[split])
    else:
        preferred = {}
        for folder in folders:
            for path in folder.glob("video*.mp4"):
                match = re.fullmatch(r"video(\d+)\.mp4", path.name)
                if match:
                    preferred.setdefault(int(match.group(1)), folder)
        if not preferred:
            raise DatasetLayoutError(
                f"no {{train,val,test}}_qa.json in {dataset_dir} and no video<N>.mp4 in {folders[0]} or {folders[1]}")
    entries = []
    for video_id in sorted(preferred):
        name = f"video{video_id}.mp4"
        found = [folder / name for folder in [preferred[video_id], *folders] if (folder / name).is_file()]
        entries.append(VideoEntry(video_id, found[0] if found else preferred[video_id] / name))
    return entries


def list_videos(dataset: str, dataset_dir: str | Path) -> list[VideoEntry]:
    """Every video to extract, sorted by video_id (this order is the row order of the feature files)."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise DatasetLayoutError(f"dataset folder not found: {dataset_dir}")
    name = canonical_dataset_name(dataset)
    entries = _list_msvd(dataset_dir) if name == "msvd-qa" else _list_msrvtt(dataset_dir)
    if not entries:
        raise DatasetLayoutError(f"{dataset_dir}: no videos found for {name}")
    return entries
