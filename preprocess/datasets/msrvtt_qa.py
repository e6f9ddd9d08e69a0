"""MSRVTT-QA: 10,000 videos, open-ended questions typed by their first word.

Layout: ``<dir>/TrainValVideo/video<N>.mp4`` and ``<dir>/TestVideo/video<N>.mp4`` (video_id N), and
``{train,val,test}_qa.json`` (preprocess/datasets/qa_json.py) in ``<dir>`` or ``<dir>/annotations/``. The videos to
extract are those the QA files reference; without QA files, every ``video<N>.mp4`` of the two folders. A
referenced video that has no file is still listed, so extraction records it as failed instead of dropping the row.
"""
from __future__ import annotations

import re
from pathlib import Path

from preprocess.datasets import register_dataset
from preprocess.datasets.base import QA_SPLITS, DatasetLayoutError, VideoEntry
from preprocess.datasets.qa_json import QAJsonDataset, read_qa_video_ids

MSRVTT_VIDEO_DIRS = {"train": "TrainValVideo", "val": "TrainValVideo", "test": "TestVideo"}


def list_msrvtt_videos(dataset_dir: Path) -> list[VideoEntry]:
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


@register_dataset
class MSRVTTQA(QAJsonDataset):
    name = "msrvtt-qa"
    aliases = ("msrvtt",)
    default_num_clips = 16      # DualVGR
    default_answer_top = 4000   # HCRN / DualVGR

    def list_videos(self, dataset_dir: Path) -> list[VideoEntry]:
        return list_msrvtt_videos(dataset_dir)
