"""MSVD-QA (Xu et al. 2017): 1,970 videos, open-ended questions typed by their first word.

Layout: ``<dir>/YouTubeClips/<youtube name>.avi``, ``<dir>/youtube_mapping.txt`` (``<youtube name> vid<N>`` per
line; video_id N), and ``{train,val,test}_qa.json`` (preprocess/datasets/qa_json.py) in ``<dir>`` or
``<dir>/annotations/``. The videos to extract are those the QA files reference (every question then finds its row);
without QA files, every video of the mapping. A referenced video that has no file is still listed (with the path
where it was expected), so extraction records it as failed instead of dropping the row.
"""
from __future__ import annotations

import re
from pathlib import Path

from preprocess.datasets import register_dataset
from preprocess.datasets.base import DatasetLayoutError, VideoEntry
from preprocess.datasets.qa_json import QAJsonDataset, read_qa_video_ids

MSVD_MAPPING = "youtube_mapping.txt"
MSVD_VIDEO_DIR = "YouTubeClips"


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


def list_msvd_videos(dataset_dir: Path) -> list[VideoEntry]:
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


@register_dataset
class MSVDQA(QAJsonDataset):
    name = "msvd-qa"
    aliases = ("msvd",)
    default_num_clips = 8       # DualVGR
    default_answer_top = 1000   # HCRN / DualVGR

    def list_videos(self, dataset_dir: Path) -> list[VideoEntry]:
        return list_msvd_videos(dataset_dir)
