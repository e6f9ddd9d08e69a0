"""Synthetic MSRVTT-QA in its official layout (docs/data_formats.md), read by preprocess/datasets/msrvtt_qa.py:

    TrainValVideo/video<N>.mp4      the train and val videos
    TestVideo/video<N>.mp4          the test videos
    train_qa.json, val_qa.json, test_qa.json
                                    JSON lists of {"answer", "category_id", "id", "question", "video_id"}

Video ids count from 0 in split order (train, then val, then test), as the real dataset's; question ids count from 0
over the three files. ``category_id`` is a video category in 0..19 (MSR-VTT has 20; the readers ignore it). The
questions are the demo's open-ended templates (msvd_qa.py), typed by their first word (what, who, how, when, where).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from preprocess.datasets.msrvtt_qa import MSRVTT_VIDEO_DIRS
from preprocess.synthetic.msvd_qa import question_candidates, sample_questions
from preprocess.synthetic.scenes import FPS, LAYOUT_QUESTION_STREAM, make_scenes, split_videos
from preprocess.video import encode_video

QUESTIONS_PER_VIDEO = 8   # question draws per video (a draw whose type has no unused question left is dropped)
VIDEO_CATEGORIES = 20
MSRVTT_STREAM = 98        # this layout's random stream beside the shared LAYOUT_QUESTION_STREAM


def write_msrvtt(out: Path, scenes: list[dict], seed: int) -> dict:
    """Write the videos and QA files of ``scenes`` under ``out``; returns the questions per split."""
    questions = {"train": [], "val": [], "test": []}
    next_id = 0
    for video_id, (scene, split) in enumerate(zip(scenes, split_videos(len(scenes)))):
        folder = out / MSRVTT_VIDEO_DIRS[split]
        folder.mkdir(parents=True, exist_ok=True)
        encode_video(folder / f"video{video_id}.mp4", scene["frames"], fps=FPS)
        rng = np.random.default_rng([seed, LAYOUT_QUESTION_STREAM, MSRVTT_STREAM, video_id])
        category = int(rng.integers(VIDEO_CATEGORIES))
        for question, answer in sample_questions(rng, question_candidates(scene["objects"]), QUESTIONS_PER_VIDEO):
            questions[split].append({"answer": answer, "category_id": category, "id": next_id, "question": question,
                                     "video_id": video_id})
            next_id += 1
    for split, entries in questions.items():
        (out / f"{split}_qa.json").write_text(json.dumps(entries))
    return {split: len(entries) for split, entries in questions.items()}


def write_layout(out: Path, num_videos: int, seed: int, frames: int, size: int, task: str | None = None) -> dict:
    """Write the layout under ``out``; returns the questions per split."""
    return write_msrvtt(out, make_scenes(num_videos, seed, frames, size), seed)
