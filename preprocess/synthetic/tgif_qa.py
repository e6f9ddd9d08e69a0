"""Synthetic TGIF-QA in its official layout: ``csv/{Train,Test}_<task>_question.csv`` (tab-separated, the official
columns) for the four tasks (or one) and ``gifs/<gif_name>.gif``; ``key`` = video id. Count questions include "how
many purple shapes are there?" (0, which HCRN reads as 1). preprocess/datasets/tgif_qa.py reads them.
"""
from __future__ import annotations

import csv
from pathlib import Path

import av
import numpy as np

from preprocess.datasets.tgif_qa import TASKS as TGIF_TASKS
from preprocess.synthetic.scenes import (FPS, LAYOUT_QUESTION_STREAM, NUMBER_WORDS, PLACE_OF_DIRECTION, make_scenes,
                                         shape_name, shuffled_candidates)


def write_gif(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    """uint8 RGB frames (T, H, W, 3) as a GIF (PyAV's gif encoder, 3-3-2 palette: the scene colours are exact)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("gif", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "rgb8"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


ACTION_WORDS = {"left": "move left", "right": "move right", "up": "move up", "down": "move down"}
TRANSITION_ANSWERS = {"whole": "keep moving", "beginning": "stop", "end": "start moving"}
TRANSITION_EXTRA = ("turn around", "jump")
MOVED_PHRASE = {"whole": "moving", "beginning": "moving", "end": "standing still"}


def tgif_rows(task: str, objects: list[dict], rng: np.random.Generator) -> list[dict]:
    """The task's question rows of one scene (without gif_name and key)."""
    rows = []
    for obj in objects:
        if task == "action":
            candidates, answer = shuffled_candidates(rng, ACTION_WORDS[obj["direction"]],
                                          list(ACTION_WORDS.values()) + ["stay still"])
            rows.append({"question": f"what does the {shape_name(obj)} do?", "candidates": candidates, "answer": answer})
        elif task == "transition":
            candidates, answer = shuffled_candidates(rng, TRANSITION_ANSWERS[obj["moving"]],
                                          list(TRANSITION_ANSWERS.values()) + list(TRANSITION_EXTRA))
            rows.append({"question": f"what does the {shape_name(obj)} do after {MOVED_PHRASE[obj['moving']]}?",
                         "candidates": candidates, "answer": answer})
        elif task == "frameqa":
            rows += [{"question": f"what is the {obj['color']} object?", "answer": obj["shape"], "type": 0},
                     {"question": f"what color is the {obj['shape']}?", "answer": obj["color"], "type": 2},
                     {"question": f"where does the {shape_name(obj)} go?", "answer": PLACE_OF_DIRECTION[obj["direction"]],
                      "type": 3}]
    if task == "count":
        rows += [{"question": "how many shapes are there?", "answer": len(objects)},
                 {"question": f"how many {objects[0]['color']} shapes are there?",
                  "answer": sum(obj["color"] == objects[0]["color"] for obj in objects)},
                 {"question": "how many purple shapes are there?", "answer": 0}]  # no scene has purple
    if task == "frameqa":
        rows.append({"question": "how many shapes are there?", "answer": NUMBER_WORDS[len(objects)], "type": 1})
    return rows


def tgif_columns(task: str) -> list[str]:
    if task in ("action", "transition"):
        return ["gif_name", "question", "a1", "a2", "a3", "a4", "a5", "answer", "vid_id", "key"]
    if task == "frameqa":
        return ["gif_name", "question", "answer", "type", "vid_id", "key"]
    return ["gif_name", "question", "answer", "vid_id", "key"]


def write_tgif(out: Path, scenes: list[dict], seed: int, tasks: tuple) -> dict:
    (out / "gifs").mkdir(parents=True, exist_ok=True)
    (out / "csv").mkdir(exist_ok=True)
    num_test = max(1, round(0.25 * len(scenes)))
    counts = {}
    for video_id, scene in enumerate(scenes, 1):
        write_gif(out / "gifs" / f"tumblr_synth{video_id:04d}.gif", scene["frames"])
    for task in tasks:
        tables = {"Train": [], "Test": []}
        for video_id, scene in enumerate(scenes, 1):
            rng = np.random.default_rng([seed, LAYOUT_QUESTION_STREAM, TGIF_TASKS.index(task), video_id])
            gif = f"tumblr_synth{video_id:04d}"
            for row in tgif_rows(task, scene["objects"], rng):
                fields = {"gif_name": gif, "question": row["question"], "answer": row["answer"],
                          "vid_id": f"{gif}_{video_id}", "key": video_id}
                if "candidates" in row:
                    fields.update({f"a{k + 1}": text for k, text in enumerate(row["candidates"])})
                if "type" in row:
                    fields["type"] = row["type"]
                tables["Test" if video_id > len(scenes) - num_test else "Train"].append(fields)
        for prefix, rows in tables.items():
            with open(out / "csv" / f"{prefix}_{task}_question.csv", "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=tgif_columns(task), delimiter="\t", lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
            counts[f"{prefix}_{task}"] = len(rows)
    return counts


def write_layout(out: Path, num_videos: int, seed: int, frames: int, size: int, task: str | None = None) -> dict:
    """Write the layout of ``task`` (all four tasks when None) under ``out``; returns the questions per file."""
    return write_tgif(out, make_scenes(num_videos, seed, frames, size), seed, (task,) if task else TGIF_TASKS)
