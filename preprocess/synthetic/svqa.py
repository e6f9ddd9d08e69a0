"""Synthetic SVQA in its official layout: ``{train,val,test}_qa.json`` (``id`` = video id, ``question``, ``ans``,
``program``) and ``useVideo/<id>.mp4``. Every video is asked one question per category, so all 15 last program
functions appear (preprocess/datasets/svqa.py reads them).
"""
from __future__ import annotations

import json
from pathlib import Path

from preprocess.synthetic.render import SHAPES
from preprocess.synthetic.scenes import ADVERB_OF_SPEED, FPS, make_scenes, shape_name, split_videos
from preprocess.video import encode_video


def svqa_questions(objects: list[dict]) -> list[tuple[str, str, str]]:
    """(last program function, question, answer) for each of the 15 SVQA categories, from one scene."""
    first, last = objects[0], objects[-1]
    present = {obj["shape"] for obj in objects}
    absent_shape = next(s for s in SHAPES if s not in present)
    count = {s: sum(o["shape"] == s for o in objects) for s in SHAPES}
    other = next(s for s in SHAPES if s != first["shape"])

    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    def same(key: str) -> tuple[str, str]:
        return (f"is the {shape_name(first)} the same {key} as the {shape_name(last)}?", yes(first[key] == last[key]))

    return [
        ("count", "how many shapes are there?", str(len(objects))),
        ("exist", f"is there a {absent_shape}?", "no"),
        ("query_color", f"what color is the {first['shape']}?", first["color"]),
        ("query_size", f"what size is the {first['color']} shape?", first["size"]),
        ("query_actiontype", f"how does the {first['color']} shape move?", ADVERB_OF_SPEED[first["speed"]]),
        ("query_direction", f"what direction does the {first['shape']} move?", first["direction"]),
        ("query_shape", f"what shape is {first['color']}?", first["shape"]),
        ("compare_more", f"are there more {first['shape']}s than {other}s?",
         yes(count[first["shape"]] > count[other])),
        ("compare_equal", f"are there as many {first['shape']}s as {other}s?",
         yes(count[first["shape"]] == count[other])),
        ("compare_less", f"are there fewer {first['shape']}s than {other}s?",
         yes(count[first["shape"]] < count[other])),
        ("attribute_compare_color", *same("color")),
        ("attribute_compare_size", *same("size")),
        ("attribute_compare_actiontype", *same("speed")),
        ("attribute_compare_direction", *same("direction")),
        ("attribute_compare_shape", *same("shape")),
    ]


def write_svqa(out: Path, scenes: list[dict]) -> dict:
    (out / "useVideo").mkdir(parents=True, exist_ok=True)
    splits = split_videos(len(scenes))
    questions = {"train": [], "val": [], "test": []}
    for video_id, (scene, split) in enumerate(zip(scenes, splits), 1):
        encode_video(out / "useVideo" / f"{video_id}.mp4", scene["frames"], fps=FPS)
        for function, question, answer in svqa_questions(scene["objects"]):
            program = [{"function": "scene", "inputs": [], "value_inputs": []},
                       {"function": function, "inputs": [0], "value_inputs": []}]
            questions[split].append({"id": video_id, "question": question, "ans": answer, "program": program})
    for split, entries in questions.items():
        (out / f"{split}_qa.json").write_text(json.dumps(entries))
    return {split: len(entries) for split, entries in questions.items()}


def write_layout(out: Path, num_videos: int, seed: int, frames: int, size: int, task: str | None = None) -> dict:
    """Write the layout under ``out``; returns the questions per split."""
    return write_svqa(out, make_scenes(num_videos, seed, frames, size))
