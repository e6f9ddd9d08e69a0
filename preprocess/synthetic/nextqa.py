"""Synthetic NExT-QA in its official layout: ``{train,val,test}.csv``, ``map_vid_vidorID.json`` and
``NExTVideo/<folder>/<vidor id>.mp4``. Every video is asked one question of each of the 8 types (questions without
'?', as NExT-QA's); preprocess/datasets/nextqa.py reads them.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from preprocess.synthetic.render import COLORS
from preprocess.synthetic.scenes import (ADVERB_OF_SPEED, DIRECTIONS, FPS, LAYOUT_QUESTION_STREAM, NUMBER_WORDS,
                                         PLACE_OF_DIRECTION, make_scenes, shape_name, shuffled_candidates,
                                         split_videos)
from preprocess.video import encode_video


NEXTQA_COLUMNS = ["video", "frame_count", "width", "height", "question", "answer", "qid", "type",
                  "a0", "a1", "a2", "a3", "a4"]
NEXTQA_FIRST_VIDEO = 4010069381


def nextqa_questions(objects: list[dict]) -> list[tuple[str, str, str, list[str]]]:
    """(type, question, right answer, four distractors) for each of the 8 NExT-QA types, from one scene."""
    obj = objects[0]
    ref = shape_name(obj)
    place = PLACE_OF_DIRECTION[obj["direction"]]
    others = [d for d in DIRECTIONS if d != obj["direction"]]
    tn = {"whole": "keeps moving", "beginning": "stops", "end": "starts moving"}
    tp = {"whole": "moves", "beginning": "moves", "end": "stays still"}
    return [
        ("CW", f"why does the {ref} reach the {place}", f"it moves {obj['direction']}",
         [f"it moves {d}" for d in others] + ["it is still"]),
        ("CH", f"how does the {ref} move", ADVERB_OF_SPEED[obj["speed"]],
         [ADVERB_OF_SPEED["slow" if obj["speed"] == "fast" else "fast"], "jumping", "rolling", "spinning"]),
        ("TN", f"what does the {ref} do after the beginning", tn[obj["moving"]],
         [v for k, v in tn.items() if k != obj["moving"]] + ["turns around", "disappears"]),
        ("TC", f"what does the {ref} do while moving", f"goes {obj['direction']}",
         [f"goes {d}" for d in others] + ["spins"]),
        ("TP", f"what does the {ref} do before the end", tp[obj["moving"]],
         ["stays still" if tp[obj["moving"]] == "moves" else "moves", "jumps", "spins", "grows"]),
        ("DL", f"where does the {ref} go", place,
         [PLACE_OF_DIRECTION[d] for d in others] + ["middle"]),
        ("DC", "how many shapes are there", NUMBER_WORDS[len(objects)],
         [NUMBER_WORDS[3 - len(objects)], "three", "four", "five"]),
        ("DO", f"what color is the {obj['shape']}", obj["color"],
         [c for c in COLORS if c != obj["color"]][:4]),
    ]


def write_nextqa(out: Path, scenes: list[dict], seed: int) -> dict:
    splits = split_videos(len(scenes))
    tables = {"train": [], "val": [], "test": []}
    mapping = {}
    for number, (scene, split) in enumerate(zip(scenes, splits)):
        video_id = NEXTQA_FIRST_VIDEO + 7919 * number
        folder = f"{number % 3:04d}"
        mapping[str(video_id)] = f"{folder}/{video_id}"
        (out / "NExTVideo" / folder).mkdir(parents=True, exist_ok=True)
        frames = scene["frames"]
        encode_video(out / "NExTVideo" / folder / f"{video_id}.mp4", frames, fps=FPS)
        rng = np.random.default_rng([seed, LAYOUT_QUESTION_STREAM, 99, number])
        for qid, (kind, question, right, wrong) in enumerate(nextqa_questions(scene["objects"])):
            candidates, answer = shuffled_candidates(rng, right, [right, *wrong])
            tables[split].append(dict(zip(NEXTQA_COLUMNS, [video_id, len(frames), frames.shape[2], frames.shape[1],
                                                           question, answer, qid, kind, *candidates])))
    for split, rows in tables.items():
        with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=NEXTQA_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    (out / "map_vid_vidorID.json").write_text(json.dumps(mapping))
    return {split: len(rows) for split, rows in tables.items()}


def write_layout(out: Path, num_videos: int, seed: int, frames: int, size: int, task: str | None = None) -> dict:
    """Write the layout under ``out``; returns the questions per split."""
    return write_nextqa(out, make_scenes(num_videos, seed, frames, size), seed)
