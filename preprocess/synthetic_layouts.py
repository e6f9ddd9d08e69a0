"""Tiny synthetic datasets in the OFFICIAL layouts of SVQA, TGIF-QA and NExT-QA (seeded, CPU, a second or two).

Each video shows one or two coloured shapes moving on black (the scenes of preprocess/synthetic_dataset.py, each
shape also "small" or "large"); every question is answered from its video's scene:

- SVQA: ``{train,val,test}_qa.json`` (``id`` = video id, ``question``, ``ans``, ``program``) and
  ``useVideo/<id>.mp4``; every video is asked one question per category, so all 15 last program functions appear.
- TGIF-QA: ``csv/{Train,Test}_<task>_question.csv`` (tab-separated, the official columns) for the four tasks (or
  the one ``task``) and ``gifs/<gif_name>.gif``; ``key`` = video id. Count questions include "how many purple
  shapes are there?" (0, which HCRN reads as 1).
- NExT-QA: ``{train,val,test}.csv``, ``map_vid_vidorID.json`` and ``NExTVideo/<folder>/<vidor id>.mp4``; every
  video is asked one question of each of the 8 types (questions without '?', as NExT-QA's).

    python -m preprocess.synthetic_layouts --dataset svqa --out data/svqa_synthetic
    python -m preprocess.synthetic_layouts --dataset tgif-qa --out data/tgif_synthetic [--question_type action]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av
import numpy as np

from preprocess.datasets import canonical_dataset_name, get_dataset
from preprocess.datasets.svqa import CATEGORIES as SVQA_CATEGORIES
from preprocess.datasets.tgif_qa import TASKS as TGIF_TASKS
from preprocess.synthetic_dataset import (ADVERB_OF_SPEED, NUMBER_WORDS, PLACE_OF_DIRECTION, SyntheticSpec,
                                          sample_scene)
from preprocess.synthetic_render import BACKGROUND, COLORS, SHAPES, shape_masks
from preprocess.video import encode_video

DEFAULT_NUM_VIDEOS = 12
DEFAULT_FRAMES = 12
DEFAULT_SIZE = 32
FPS = 8
SIZES = ("small", "large")
SMALL_FRACTION = 0.6          # a small shape's radius / a large one's
DIRECTIONS = ("left", "right", "up", "down")
SCENE_STREAM, SIZE_STREAM, QUESTION_STREAM = 10, 11, 12


# ---------------------------------------------------------------------------------------------------------- scenes
def make_scenes(num_videos: int, seed: int, frames: int = DEFAULT_FRAMES, size: int = DEFAULT_SIZE) -> list[dict]:
    """``num_videos`` scenes: {"objects": [...], "frames": uint8 (T, size, size, 3)}, objects as sample_scene's plus
    ``size`` (small | large)."""
    spec = SyntheticSpec(num_videos=max(num_videos, 3), seed=seed, frames=frames, size=size)
    scenes = []
    for video in range(num_videos):
        objects = sample_scene(np.random.default_rng([seed, SCENE_STREAM, video]), spec)
        size_rng = np.random.default_rng([seed, SIZE_STREAM, video])
        for obj in objects:
            obj["size"] = SIZES[int(size_rng.integers(2))]
        scenes.append({"objects": objects, "frames": render(objects, spec.radius, size, frames)})
    return scenes


def render(objects: list[dict], radius: float, size: int, num_frames: int) -> np.ndarray:
    """uint8 (T, size, size, 3): each object drawn with its own radius (small ones ``SMALL_FRACTION`` of it)."""
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    frames[:] = BACKGROUND
    for obj in objects:
        own = radius * (SMALL_FRACTION if obj["size"] == "small" else 1.0)
        frames[shape_masks(obj["shape"], np.asarray(obj["positions"]), own, size)] = COLORS[obj["color"]]
    return frames


def split_videos(num_videos: int, fractions=(0.7, 0.15)) -> list[str]:
    """Split of each video (train first, then val, then test; each split gets at least one video)."""
    num_train = max(1, min(num_videos - 2, round(fractions[0] * num_videos)))
    num_val = max(1, min(num_videos - num_train - 1, round(fractions[1] * num_videos)))
    return ["train"] * num_train + ["val"] * num_val + ["test"] * (num_videos - num_train - num_val)


def write_gif(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    """uint8 RGB frames (T, H, W, 3) as a GIF (PyAV's gif encoder, 3-3-2 palette: the scene colours are exact)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("gif", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "rgb8"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def _ref(obj: dict) -> str:
    return f"{obj['color']} {obj['shape']}"


# ------------------------------------------------------------------------------------------------------------ SVQA
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
        return (f"is the {_ref(first)} the same {key} as the {_ref(last)}?", yes(first[key] == last[key]))

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


# --------------------------------------------------------------------------------------------------------- TGIF-QA
ACTION_WORDS = {"left": "move left", "right": "move right", "up": "move up", "down": "move down"}
TRANSITION_ANSWERS = {"whole": "keep moving", "beginning": "stop", "end": "start moving"}
TRANSITION_EXTRA = ("turn around", "jump")
MOVED_PHRASE = {"whole": "moving", "beginning": "moving", "end": "standing still"}


def _choices(rng: np.random.Generator, right: str, options: list[str]) -> tuple[list[str], int]:
    """The five candidates (``right`` among them, in a seeded order) and the right one's index."""
    order = rng.permutation(5)
    candidates = [options[i] for i in order]
    return candidates, candidates.index(right)


def tgif_rows(task: str, objects: list[dict], rng: np.random.Generator) -> list[dict]:
    """The task's question rows of one scene (without gif_name and key)."""
    rows = []
    for obj in objects:
        if task == "action":
            candidates, answer = _choices(rng, ACTION_WORDS[obj["direction"]],
                                          list(ACTION_WORDS.values()) + ["stay still"])
            rows.append({"question": f"what does the {_ref(obj)} do?", "candidates": candidates, "answer": answer})
        elif task == "transition":
            candidates, answer = _choices(rng, TRANSITION_ANSWERS[obj["moving"]],
                                          list(TRANSITION_ANSWERS.values()) + list(TRANSITION_EXTRA))
            rows.append({"question": f"what does the {_ref(obj)} do after {MOVED_PHRASE[obj['moving']]}?",
                         "candidates": candidates, "answer": answer})
        elif task == "frameqa":
            rows += [{"question": f"what is the {obj['color']} object?", "answer": obj["shape"], "type": 0},
                     {"question": f"what color is the {obj['shape']}?", "answer": obj["color"], "type": 2},
                     {"question": f"where does the {_ref(obj)} go?", "answer": PLACE_OF_DIRECTION[obj["direction"]],
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
            rng = np.random.default_rng([seed, QUESTION_STREAM, TGIF_TASKS.index(task), video_id])
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


# --------------------------------------------------------------------------------------------------------- NExT-QA
NEXTQA_COLUMNS = ["video", "frame_count", "width", "height", "question", "answer", "qid", "type",
                  "a0", "a1", "a2", "a3", "a4"]
NEXTQA_FIRST_VIDEO = 4010069381


def nextqa_questions(objects: list[dict]) -> list[tuple[str, str, str, list[str]]]:
    """(type, question, right answer, four distractors) for each of the 8 NExT-QA types, from one scene."""
    obj = objects[0]
    ref = _ref(obj)
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
        rng = np.random.default_rng([seed, QUESTION_STREAM, 99, number])
        for qid, (kind, question, right, wrong) in enumerate(nextqa_questions(scene["objects"])):
            candidates, answer = _choices(rng, right, [right, *wrong])
            tables[split].append(dict(zip(NEXTQA_COLUMNS, [video_id, len(frames), frames.shape[2], frames.shape[1],
                                                           question, answer, qid, kind, *candidates])))
    for split, rows in tables.items():
        with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=NEXTQA_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    (out / "map_vid_vidorID.json").write_text(json.dumps(mapping))
    return {split: len(rows) for split, rows in tables.items()}


# ------------------------------------------------------------------------------------------------------ entry point
def write_synthetic(dataset: str, out_dir, task: str | None = None, num_videos: int = DEFAULT_NUM_VIDEOS,
                    seed: int = 0, frames: int = DEFAULT_FRAMES, size: int = DEFAULT_SIZE) -> dict:
    """Write ``dataset``'s official layout under ``out_dir`` (TGIF-QA: the files of ``task``, or of all four tasks
    when None). Returns the number of questions per written file or split."""
    name = canonical_dataset_name(dataset)
    if task is not None:
        get_dataset(name, task)  # refuses a task the dataset does not have
    if num_videos < 4:
        raise ValueError(f"num_videos must be at least 4 (every split needs a video), got {num_videos}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scenes = make_scenes(num_videos, seed, frames, size)
    if name == "svqa":
        return write_svqa(out, scenes)
    if name == "tgif-qa":
        return write_tgif(out, scenes, seed, (task,) if task else TGIF_TASKS)
    if name == "nextqa":
        return write_nextqa(out, scenes, seed)
    raise ValueError(f"no synthetic layout for {name}: svqa, tgif-qa or nextqa (MSVD-QA: preprocess.synthetic_dataset)")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m preprocess.synthetic_layouts",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", required=True, help="svqa, tgif-qa (tgif) or nextqa (next-qa)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--question_type", default=None, help="TGIF-QA: one task's files only (default: all four)")
    parser.add_argument("--num_videos", type=int, default=DEFAULT_NUM_VIDEOS, help="videos")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames per video")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="frame side in pixels (even, >= 32)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same questions and scenes")
    args = parser.parse_args(argv)
    try:
        counts = write_synthetic(args.dataset, args.out, args.question_type, args.num_videos, args.seed,
                                 args.frames, args.size)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {args.out}: " + ", ".join(f"{name} {count}" for name, count in counts.items()) + " questions")
    return counts


if __name__ == "__main__":
    main()
