"""The demo dataset: synthetic video QA in the MSVD-QA layout (seeded, deterministic, CPU, seconds).

Each video shows one or two coloured shapes (circle, square, triangle, diamond) moving left, right, up or down,
quickly or slowly, for the whole clip or only its beginning or end, on a black background. Questions are short
English whose words are all in GloVe 6B, in the five MSVD-QA types by first word, and each answer is decidable from
the video: appearance (colour, shape), motion (direction, speed, when it moves) and both ("what color is the shape
moving left?"), and in two-shape videos whose motions have a clear order, which shape moves first or last. Two-shape
videos have distinct colours, shapes and directions, so questions must bind attributes. Every attribute is drawn
uniformly, so within a question template every answer is equally likely (the statistics give chance given the
template, the accuracy of guessing uniformly among the answers a question's template allows).
A video is asked many questions (about 38 by default: features are computed per video, so questions are cheap), which
gives the default 200 videos a test split of over 2,000 questions with at least 100 of every type.

Written under --out (the layout of docs/data_formats.md, so the MSVD-QA preprocessing runs on it unchanged):
    YouTubeClips/synth_00042.avi     MJPEG video, --size x --size pixels, --frames frames
    youtube_mapping.txt              "synth_00042 vid42" per line
    train_qa.json, val_qa.json, test_qa.json
                                     JSON lists of {"answer", "id", "question", "video_id"}; splits disjoint by video
    metadata.json                    ground truth per video (shapes, colours, directions, speeds, positions per frame)

    python -m preprocess.synthetic.msvd_qa --out data/demo/raw --num_videos 200 --seed 0

The scenes come from the shared generator (scenes.py); this module adds the MSVD-QA question templates, the
splits, the statistics and the files.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

import numpy as np
from termcolor import colored

from preprocess.synthetic.render import BACKGROUND, COLORS, SHAPES, encode_video, render_frames
from preprocess.synthetic.scenes import (ADVERB_OF_SPEED, COLOR_PRIOR, DIRECTION_PRIOR, NUMBER_WORDS,
                                         PLACE_OF_DIRECTION, SHAPE_PRIOR, SyntheticSpec, sample_scene)
from preprocess.text import QUESTION_TYPES, question_type
from utils.cli import exit_on_input_error
from utils.majority import most_frequent
from utils.progress import progress

GENERATOR = "kdvqa synthetic video QA"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")

# Question types drawn per question. MSVD-QA asks what ~62 %, who ~30 %, how + when + where ~3 %; the demo asks every
# type often enough (>= 100 test questions each at the default size) that per-type accuracies mean something. A drawn
# type the video has no unused question for is dropped, so the written mix is printed by the generator.
TYPE_WEIGHTS = {"what": 0.35, "who": 0.12, "how": 0.18, "when": 0.2, "where": 0.15}

# Answers to "when does ... move?" and "when is ... still?" per `moving` value.
WHEN_MOVING = {"whole": "always", "beginning": "beginning", "end": "end"}
WHEN_STILL = {"whole": "never", "beginning": "end", "end": "beginning"}
# Which of two shapes moves first (it moves from the start, the other only at the end) or last (it still moves at
# the end, the other only at the beginning): answering needs the order of events across clips.
STARTS, ENDS = ("whole", "beginning"), ("whole", "end")
# Every answer's set of possible answers (its template's): chance given the template is 1 / the set's size.
ANSWER_DOMAINS = (tuple(COLOR_PRIOR), tuple(SHAPE_PRIOR), tuple(DIRECTION_PRIOR),
                  tuple(PLACE_OF_DIRECTION.values()), tuple(ADVERB_OF_SPEED.values()), tuple(NUMBER_WORDS.values()),
                  tuple(WHEN_MOVING.values()), tuple(WHEN_STILL.values()))

SCENE_STREAM, QUESTION_STREAM, SPLIT_STREAM = 0, 1, 2   # independent random streams derived from the seed


def video_name(video_id: int) -> str:
    return f"synth_{video_id:05d}"


def type_of(question: str) -> str:
    """The question type of a generated question (its first word)."""
    return question_type(question.split(" ", 1)[0].lower())


# ------------------------------------------------------------------------------------------------------- questions
def event_order(obj: dict, other: dict | None) -> str | None:
    """"first" when `obj` moves from the start and `other` only at the end, "last" when `obj` still moves at the end
    and `other` only at the beginning, else None (one shape, or no clear order)."""
    if other is None:
        return None
    if obj["moving"] in STARTS and other["moving"] == "end":
        return "first"
    if obj["moving"] in ENDS and other["moving"] == "beginning":
        return "last"
    return None


def references(obj: dict, unique_speed: bool, order: str | None = None) -> dict[str, str]:
    """Noun phrases that pick `obj` out of its scene, by the attribute(s) they reveal.

    Keys: "shape" (circle), "color" (red shape), "color_shape" (red circle), "direction" (shape moving left),
    when no other shape has the same speed class "speed" (fast shape), and when the order of the two shapes'
    motions is clear (event_order) "order" (shape that moves first). Shapes, colours and directions are distinct
    within a scene, so each phrase names exactly one shape.
    """
    phrases = {"shape": obj["shape"], "color": f"{obj['color']} shape",
               "color_shape": f"{obj['color']} {obj['shape']}", "direction": f"shape moving {obj['direction']}"}
    if unique_speed:
        phrases["speed"] = f"{obj['speed']} shape"
    if order is not None:
        phrases["order"] = f"shape that moves {order}"
    return phrases


def _phrases(refs: dict[str, str], revealed: set[str]) -> list[str]:
    """The phrases of `refs` that reveal none of the attributes in `revealed` (so they do not give the answer away)."""
    hides = {"shape": {"shape"}, "color": {"color"}, "color_shape": {"color", "shape"}, "direction": {"direction"},
             "speed": {"speed"}, "order": {"moving"}}
    return [phrase for kind, phrase in refs.items() if not hides[kind] & revealed]


def question_candidates(objects: list[dict]) -> dict[str, list[tuple[str, str]]]:
    """Every (question, answer) the scene decides, by question type. Objects as returned by sample_scene.

    Each attribute question is asked once per referring phrase that does not contain its answer (references), so a
    two-shape video decides about 50 questions and a one-shape video about 30. Two shapes whose motions have a
    clear order (event_order) are also asked which moves first / last, and about "the shape that moves first".
    """
    candidates = {kind: [] for kind in QUESTION_TYPES}
    speed_counts = Counter(obj["speed"] for obj in objects)
    for index, obj in enumerate(objects):
        shape, color, direction, speed = obj["shape"], obj["color"], obj["direction"], obj["speed"]
        order = event_order(obj, objects[1 - index] if len(objects) == 2 else None)
        refs = references(obj, speed_counts[speed] == 1, order)
        candidates["what"] += [(f"what color is the {ref}?", color) for ref in _phrases(refs, {"color"})]
        candidates["what"] += [(f"what is the {ref}?", shape) for ref in _phrases(refs, {"shape"})]
        candidates["what"] += [(f"what direction does the {ref} move?", direction)
                               for ref in _phrases(refs, {"direction"})]
        candidates["who"] += [(f"who moves {direction}?", shape), (f"who is {color}?", shape)]
        if speed_counts[speed] == 1:
            candidates["who"].append((f"who moves {ADVERB_OF_SPEED[speed]}?", shape))
        if order is not None:
            candidates["who"].append((f"who moves {order}?", shape))
        candidates["how"] += [(f"how does the {ref} move?", ADVERB_OF_SPEED[speed]) for ref in _phrases(refs, {"speed"})]
        candidates["where"] += [(f"where does the {ref} go?", PLACE_OF_DIRECTION[direction])
                                for ref in _phrases(refs, {"direction"})]
        candidates["when"] += [(f"when does the {ref} move?", WHEN_MOVING[obj["moving"]])
                               for ref in _phrases(refs, {"moving"})]
        candidates["when"] += [(f"when is the {ref} still?", WHEN_STILL[obj["moving"]])
                               for ref in _phrases(refs, {"moving"})]
    candidates["how"].append(("how many shapes are there?", NUMBER_WORDS[len(objects)]))
    return candidates


def sample_questions(rng: np.random.Generator, candidates: dict[str, list[tuple[str, str]]],
                     count: int) -> list[tuple[str, str]]:
    """Draw `count` question types by TYPE_WEIGHTS; each takes an unused candidate of its type or is dropped."""
    pools = {kind: [pool[i] for i in rng.permutation(len(pool))] for kind, pool in candidates.items()}
    weights = np.array([TYPE_WEIGHTS[kind] for kind in QUESTION_TYPES])
    drawn = rng.choice(len(QUESTION_TYPES), size=count, p=weights / weights.sum())
    return [pools[QUESTION_TYPES[k]].pop() for k in drawn if pools[QUESTION_TYPES[k]]]


def assign_splits(spec: SyntheticSpec) -> dict[int, str]:
    """video_id (1..N) -> split, a seeded shuffle cut by the val/test fractions (each split gets >= 1 video)."""
    order = np.random.default_rng([spec.seed, SPLIT_STREAM]).permutation(np.arange(1, spec.num_videos + 1))
    num_test = max(1, round(spec.test_fraction * spec.num_videos))
    num_val = max(1, round(spec.val_fraction * spec.num_videos))
    split_of = {int(v): "test" for v in order[:num_test]}
    split_of.update({int(v): "val" for v in order[num_test:num_test + num_val]})
    split_of.update({int(v): "train" for v in order[num_test + num_val:]})
    return split_of


# ----------------------------------------------------------------------------------------------------- statistics
def template_chance(answer: str) -> float:
    """The chance of guessing `answer` uniformly among the answers its question's template allows (1 / 2 .. 1 / 5).

    Every generated answer word belongs to one set of possible answers (ANSWER_DOMAINS; a word in two sets, such
    as "left" or "beginning", has sets of the same size)."""
    sizes = {len(domain) for domain in ANSWER_DOMAINS if answer in domain}
    if len(sizes) != 1:
        raise ValueError(f"{answer!r} is not an answer of the synthetic dataset")
    return 1.0 / sizes.pop()


def chance_given_template(questions: list[dict]) -> dict:
    """{"accuracy", "per_type": {type: accuracy}}: the expected accuracy of guessing each question's answer
    uniformly among those its template allows. questions: {"question", "answer", ...} as in the QA files."""
    per_type: dict[str, list[float]] = {}
    for q in questions:
        per_type.setdefault(type_of(q["question"]), []).append(template_chance(q["answer"]))
    everything = [p for values in per_type.values() for p in values]
    return {"accuracy": float(np.mean(everything)),
            "per_type": {kind: float(np.mean(values)) for kind, values in per_type.items()}}


def majority_answer(answers: list[str]) -> str:
    """The most frequent of ``answers`` (text) by the project's one majority definition (utils/majority.py, as the
    answer heads' baselines): answers numbered in order of first appearance, lowest number on ties."""
    tokens = list(dict.fromkeys(answers))
    index = {answer: i for i, answer in enumerate(tokens)}
    return tokens[most_frequent([index[a] for a in answers])]


def dataset_statistics(questions: dict[str, list[dict]]) -> dict:
    """Type and answer distributions and the majority-answer and chance baselines of the test split.

    questions: split -> list of {"answer", "id", "question", "video_id"}. The majority baseline answers every test
    question with the most frequent training answer (:func:`majority_answer`); the per-type baseline uses the most
    frequent training answer of the question's type; chance given the template guesses uniformly among the answers the question's template
    allows (chance_given_template).
    """
    everything = [q for split in SPLITS for q in questions[split]]
    train, test = questions["train"], questions["test"]
    majority = majority_answer([q["answer"] for q in train])
    type_answers = {}
    for q in train:
        type_answers.setdefault(type_of(q["question"]), []).append(q["answer"])
    type_majority = {kind: majority_answer(answers) for kind, answers in type_answers.items()}
    per_type_hits = sum(q["answer"] == type_majority.get(type_of(q["question"])) for q in test)
    return {
        "questions_per_split": {split: len(questions[split]) for split in SPLITS},
        "videos_per_split": {split: len({q["video_id"] for q in questions[split]}) for split in SPLITS},
        "type_counts": dict(Counter(type_of(q["question"]) for q in everything).most_common()),
        "answer_counts": dict(Counter(q["answer"] for q in everything).most_common()),
        "majority_answer": majority,
        "majority_baseline_test": sum(q["answer"] == majority for q in test) / len(test),
        "per_type_majority_baseline_test": per_type_hits / len(test),
        "chance_given_template_test": chance_given_template(test)["accuracy"],
    }


def _percentages(counts: dict[str, int], limit: int | None = None) -> str:
    total = sum(counts.values())
    items = list(counts.items())[:limit]
    return "  ".join(f"{name} {100.0 * n / total:.1f}%" for name, n in items)


def log_statistics(stats: dict) -> None:
    per_split = " / ".join(f"{stats['questions_per_split'][s]:,} {s}" for s in SPLITS)
    videos = " / ".join(f"{stats['videos_per_split'][s]} {s}" for s in SPLITS)
    print(f"  questions: {per_split}   videos: {videos}")
    print(f"  question types: {_percentages(stats['type_counts'])}")
    print(f"  answers ({len(stats['answer_counts'])} distinct): {_percentages(stats['answer_counts'])}")
    print(colored(f"  majority-answer baseline on test: {100.0 * stats['majority_baseline_test']:.1f}% "
                  f"(always '{stats['majority_answer']}'); per-type majority "
                  f"{100.0 * stats['per_type_majority_baseline_test']:.1f}%; chance given the question template "
                  f"{100.0 * stats['chance_given_template_test']:.1f}%", "yellow"))


# ---------------------------------------------------------------------------------------------------------- output
def _prepare_output(out: Path) -> None:
    """Make `out` ready: new or empty, or holding an earlier synthetic dataset whose files are then removed."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    metadata_path = out / "metadata.json"
    try:
        earlier = json.loads(metadata_path.read_text())
        if earlier.get("generator") != GENERATOR:
            raise ValueError
        names = [video["name"] for video in earlier["videos"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise FileExistsError(f"--out {out} is not empty and holds no synthetic dataset ({metadata_path} missing or "
                              "not ours): refusing to write into it; choose a new or empty folder") from None
    for name in names:
        (out / "YouTubeClips" / f"{name}.avi").unlink(missing_ok=True)
    for file_name in ["youtube_mapping.txt", "metadata.json"] + [f"{split}_qa.json" for split in SPLITS]:
        (out / file_name).unlink(missing_ok=True)
    print(colored(f"replacing the synthetic dataset in {out}", "yellow"))


def _json_ready(obj: dict) -> dict:
    return {key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in obj.items()}


def generate(out: str | Path, spec: SyntheticSpec = SyntheticSpec(), show_progress: bool = True) -> dict:
    """Write the dataset described by `spec` under `out`; return dataset_statistics plus the elapsed seconds."""
    spec.validate()
    start = time.perf_counter()
    out = Path(out)
    _prepare_output(out)
    (out / "YouTubeClips").mkdir(exist_ok=True)
    split_of = assign_splits(spec)
    questions = {split: [] for split in SPLITS}
    videos = []
    for video_id in progress(range(1, spec.num_videos + 1), desc="synthetic videos", unit="video",
                         disable=not show_progress, leave=False):
        objects = sample_scene(np.random.default_rng([spec.seed, SCENE_STREAM, video_id]), spec)
        frames = render_frames(objects, spec.radius, spec.size, spec.frames)
        encode_video(frames, out / "YouTubeClips" / f"{video_name(video_id)}.avi", spec.fps)
        candidates = question_candidates(objects)
        pairs = sample_questions(np.random.default_rng([spec.seed, QUESTION_STREAM, video_id]), candidates,
                                 spec.questions_per_video)
        split = split_of[video_id]
        questions[split] += [{"answer": answer, "id": -1, "question": question, "video_id": video_id}
                             for question, answer in pairs]
        videos.append({"video_id": video_id, "name": video_name(video_id), "split": split,
                       "objects": [_json_ready(obj) for obj in objects]})
    next_id = 0
    for split in SPLITS:
        for entry in questions[split]:
            entry["id"] = next_id
            next_id += 1
        (out / f"{split}_qa.json").write_text(json.dumps(questions[split]))
    (out / "youtube_mapping.txt").write_text("".join(f"{v['name']} vid{v['video_id']}\n" for v in videos))
    metadata = {
        "generator": GENERATOR, "format_version": FORMAT_VERSION, "spec": asdict(spec),
        "radius": spec.radius, "background": list(BACKGROUND),
        "colors": {name: list(rgb) for name, rgb in COLORS.items()}, "shapes": list(SHAPES),
        "speeds_px_per_frame": {name: round(value, 4) for name, value in spec.speeds.items()},
        "videos": videos,
    }
    (out / "metadata.json").write_text(json.dumps(metadata))
    stats = dataset_statistics(questions)
    stats["seconds"] = time.perf_counter() - start
    return stats


def write_layout(out: Path, num_videos: int, seed: int, frames: int, size: int, task: str | None = None) -> dict:
    """The demo layout with these settings (the others as SyntheticSpec's defaults) under ``out``, for
    ``python -m preprocess.synthetic``; returns the questions per split."""
    spec = SyntheticSpec(num_videos=num_videos, seed=seed, frames=frames, size=size)
    return generate(out, spec, show_progress=False)["questions_per_split"]


def build_parser() -> argparse.ArgumentParser:
    defaults = SyntheticSpec()
    parser = argparse.ArgumentParser(
        prog="python -m preprocess.synthetic.msvd_qa",
        description="Generate the synthetic video QA dataset (MSVD-QA layout: YouTubeClips/, youtube_mapping.txt, "
                    "{train,val,test}_qa.json, plus metadata.json with the ground truth).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, type=Path,
                        help="output folder: new, empty, or an earlier synthetic dataset (replaced)")
    parser.add_argument("--num_videos", type=int, default=defaults.num_videos, help="number of videos (ids 1..N)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed: same seed, identical files")
    parser.add_argument("--frames", type=int, default=defaults.frames, help="frames per video (T)")
    parser.add_argument("--size", type=int, default=defaults.size, help="frame height and width in pixels (even)")
    parser.add_argument("--fps", type=int, default=defaults.fps, help="frame rate written in the video files")
    parser.add_argument("--questions_per_video", type=int, default=defaults.questions_per_video,
                        help="question draws per video (a draw whose type the video has no unused question for "
                             "is dropped)")
    parser.add_argument("--two_shape_fraction", type=float, default=defaults.two_shape_fraction,
                        help="fraction of videos with two shapes (the rest have one)")
    parser.add_argument("--val_fraction", type=float, default=defaults.val_fraction, help="fraction of videos in val")
    parser.add_argument("--test_fraction", type=float, default=defaults.test_fraction,
                        help="fraction of videos in test")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    spec = SyntheticSpec(num_videos=args.num_videos, seed=args.seed, frames=args.frames, size=args.size,
                         fps=args.fps, questions_per_video=args.questions_per_video,
                         two_shape_fraction=args.two_shape_fraction, val_fraction=args.val_fraction,
                         test_fraction=args.test_fraction)
    try:
        stats = generate(args.out, spec, show_progress=not args.quiet)
    except Exception as error:  # a bad setting or --out folder: one line and exit code 2 (utils/cli.py)
        raise SystemExit(exit_on_input_error(error, extra=(ValueError,))) from None
    print(colored(f"synthetic dataset: {spec.num_videos} videos, {sum(stats['questions_per_split'].values()):,} "
                  f"questions in {args.out} ({stats['seconds']:.1f} s)", "green"))
    log_statistics(stats)
    return stats


if __name__ == "__main__":
    main()
