"""Tiny, learnable feature / vocabulary / question files for the training and evaluation tests.

Every video has a colour (0-2, written into its appearance features) and a direction (0-2, in its motion
features). "what color ..." / "who ..." questions ask the colour, "how ..." / "where ..." / "when ..." the direction,
so the answers are decidable from the video. Feature rows are stored in a shuffled order (and in a different one in
the motion file) so that readers must map ids through ``ids``.

``answer_type`` writes the question files of the other heads (SPEC "Question files"): multiple_choice adds
``ans_candidates`` (N, 5, 2) / ``ans_candidates_len`` (the right answer word among four other answer words, at a
random position; ``answers`` its index) encoded with question_answer_token_to_idx (whose rows the GloVe matrix then
has); count makes ``answers`` the integer ``3 * colour + direction + 1`` (1..9). ``file_categories`` adds
``question_category`` (the question template's index in :data:`FILE_CATEGORIES`). The datasets these files belong to
are registered by :func:`register_tiny_datasets` (``tiny-mc``: multiple choice with file categories and two groups;
``tiny-count``: count without categories).
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import yaml

CLIPS, FRAMES, VISION_DIM, WORD_DIM = 4, 4, 16, 8
COLOURS = ("red", "green", "blue")
DIRECTIONS = ("left", "right", "up")
QUESTION_TOKENS = ["<NULL>", "<UNK>", "what", "who", "how", "when", "where", "color", "is", "it", "does", "move",
                   "the", "shape", "go", "painted"]
ANSWERS = ["<UNK0>", "<UNK1>", *COLOURS, *DIRECTIONS]
TEMPLATES = {  # question type -> (token sequence, attribute asked)
    "what": (["what", "color", "is", "it"], "colour"),
    "who": (["who", "is", "painted"], "colour"),
    "how": (["how", "does", "it", "move"], "direction"),
    "when": (["when", "does", "the", "shape", "move"], "direction"),
    "where": (["where", "does", "it", "go"], "direction"),
}
FILE_CATEGORIES = ("CW", "CH", "TN", "TC", "DL")  # one per template (what, who, how, when, where)
FILE_GROUPS = {"causal": ("CW", "CH"), "temporal": ("TN", "TC")}
NUM_CANDIDATES = 5
TINY_MODEL = {"module_dim": 32, "word_dim": WORD_DIM, "vision_dim": VISION_DIM, "num_heads": 4, "graph_layers": 2,
              "unit_layers": 1, "mfb_factor": 2, "mfb_dim": 16}


@dataclass
class TinyDataset:
    """Paths and ground truth of a written tiny dataset."""
    data_dir: Path
    colour: dict = field(default_factory=dict)      # video id -> colour index
    direction: dict = field(default_factory=dict)   # video id -> direction index
    appearance: dict = field(default_factory=dict)  # video id -> (C, F, D) float32
    motion: dict = field(default_factory=dict)      # video id -> (C, D) float32

    @property
    def appearance_path(self) -> Path:
        return self.data_dir / "tiny_appearance_feat.h5"

    @property
    def motion_path(self) -> Path:
        return self.data_dir / "tiny_motion_feat.h5"

    def question_path(self, split: str) -> Path:
        return self.data_dir / f"tiny_{split}_questions.pt"


def _questions(video_ids, per_video: int, rng):
    """(questions (N, 6) int32, lengths (N,), video ids (N,), type names) for ``per_video`` questions per video."""
    rows, lengths, vids, types = [], [], [], []
    names = list(TEMPLATES)
    for vid in video_ids:
        for _ in range(per_video):
            qtype = names[rng.integers(len(names))]
            tokens = [QUESTION_TOKENS.index(t) for t in TEMPLATES[qtype][0]]
            rows.append(tokens)
            lengths.append(len(tokens))
            vids.append(vid)
            types.append(qtype)
    questions = np.zeros((len(rows), 6), dtype=np.int32)
    for i, tokens in enumerate(rows):
        questions[i, :len(tokens)] = tokens
    return questions, np.array(lengths), np.array(vids), types


def register_tiny_datasets() -> None:
    """Register the test datasets ``tiny-mc`` (multiple choice, 5 candidates, categories from the file, groups),
    ``tiny-count`` (count, no categories) and ``tiny`` (open-ended like MSVD-QA: the dataset name of configs written
    before datasets were registered, as in tests/fixtures/checkpoint_v1_teacher.pt) in the registry (idempotent)."""
    from preprocess.datasets import register_dataset
    from preprocess.datasets.base import Dataset

    from preprocess.text import QUESTION_TYPES

    global _TINY_REGISTERED
    if _TINY_REGISTERED:
        return
    TYPE_NAMES_MSVD = QUESTION_TYPES + ("other",)

    @register_dataset
    class TinyMultipleChoice(Dataset):
        name = "tiny-mc"
        answer_type = "multiple_choice"
        category_names = FILE_CATEGORIES
        category_source = "file"
        category_groups = FILE_GROUPS
        num_candidates = NUM_CANDIDATES

    @register_dataset
    class TinyOpenEnded(Dataset):  # the name configs had before datasets were registered (old checkpoints)
        name = "tiny"
        answer_type = "open_ended"
        category_names = TYPE_NAMES_MSVD

    @register_dataset
    class TinyCount(Dataset):
        name = "tiny-count"
        answer_type = "count"
        category_names = ()
        category_source = "file"

    _TINY_REGISTERED = True


_TINY_REGISTERED = False
TINY_DATASET_NAMES = {"open_ended": "msvd-qa", "multiple_choice": "tiny-mc", "count": "tiny-count"}


def _multiple_choice(answer_words: list, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ans_candidates (N, K, 2) int32 in the joint vocabulary, ans_candidates_len (N, K), answers (N,) index)."""
    joint = QUESTION_TOKENS + ANSWERS[2:]
    words = ANSWERS[2:]
    candidates = np.zeros((len(answer_words), NUM_CANDIDATES, 2), dtype=np.int32)
    lengths = np.ones((len(answer_words), NUM_CANDIDATES), dtype=np.int32)
    answers = np.zeros(len(answer_words), dtype=np.int64)
    for i, word in enumerate(answer_words):
        others = [w for w in words if w != word]
        chosen = [others[j] for j in rng.permutation(len(others))[:NUM_CANDIDATES - 1]]
        answers[i] = int(rng.integers(NUM_CANDIDATES))
        chosen.insert(int(answers[i]), word)
        for k, w in enumerate(chosen):
            candidates[i, k, 0] = joint.index(w)
            if k % 2:  # some two-token candidates ("<word> it"): lengths differ within a question
                candidates[i, k, 1] = joint.index("it")
                lengths[i, k] = 2
    return candidates, lengths, answers


def write_tiny_dataset(root: Path, seed: int = 0, train_videos: int = 10, val_videos: int = 4, test_videos: int = 4,
                       per_video: int = 4, invalid_videos: int = 1, missing_videos: int = 1,
                       glove_dim: int = WORD_DIM, answer_type: str = "open_ended",
                       file_categories: bool = False) -> TinyDataset:
    """Write features, vocabulary and question files into ``root`` and return their ground truth.

    Train questions also refer to ``invalid_videos`` videos marked valid=0 and ``missing_videos`` videos absent
    from the feature files: the loader must skip them. Open-ended val/test answers: every 5th is <UNK1> (never
    correct). ``answer_type`` and ``file_categories``: see the module docstring.
    """
    extra_rng = np.random.default_rng(seed + 7919)  # the other heads' draws leave the open-ended files unchanged
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    data = TinyDataset(data_dir=root)
    n_usable = train_videos + val_videos + test_videos
    usable_ids = np.arange(n_usable) * 3 + 100                   # non-contiguous ids
    invalid_ids = np.arange(invalid_videos) + 900
    missing_ids = np.arange(missing_videos) + 950
    file_ids = np.concatenate([usable_ids, invalid_ids])
    app_rows, mot_rows = rng.permutation(len(file_ids)), rng.permutation(len(file_ids))
    appearance = np.zeros((len(file_ids), CLIPS, FRAMES, VISION_DIM), dtype=np.float32)
    motion = np.zeros((len(file_ids), CLIPS, VISION_DIM), dtype=np.float32)
    valid = np.zeros(len(file_ids), dtype=np.uint8)
    for i, vid in enumerate(file_ids):
        vid = int(vid)
        colour, direction = int(rng.integers(3)), int(rng.integers(3))
        app = rng.normal(0, 0.3, (CLIPS, FRAMES, VISION_DIM)).astype(np.float32)
        app[..., colour] += 2.0
        mot = rng.normal(0, 0.3, (CLIPS, VISION_DIM)).astype(np.float32)
        mot[:, 3 + direction] += 2.0
        if vid in invalid_ids:
            app[:], mot[:] = 0, 0
        else:
            valid[app_rows[i]] = 1
            data.colour[vid], data.direction[vid], data.appearance[vid], data.motion[vid] = colour, direction, app, mot
        appearance[app_rows[i]], motion[mot_rows[i]] = app, mot
    app_ids, mot_ids = np.empty_like(file_ids), np.empty_like(file_ids)
    app_ids[app_rows], mot_ids[mot_rows] = file_ids, file_ids
    mot_valid = np.isin(mot_ids, usable_ids).astype(np.uint8)
    with h5py.File(data.appearance_path, "w") as f:
        f.create_dataset("resnet_features", data=appearance)
        f.create_dataset("ids", data=app_ids)
        f.create_dataset("valid", data=valid)
    with h5py.File(data.motion_path, "w") as f:
        f.create_dataset("resnext_features", data=motion)
        f.create_dataset("ids", data=mot_ids)
        f.create_dataset("valid", data=mot_valid)

    vocab = {"question_token_to_idx": {t: i for i, t in enumerate(QUESTION_TOKENS)},
             "answer_token_to_idx": {a: i for i, a in enumerate(ANSWERS)}}
    vocab["question_answer_token_to_idx"] = {t: i for i, t in enumerate(QUESTION_TOKENS + ANSWERS[2:])}
    (root / "tiny_vocab.json").write_text(json.dumps(vocab))

    split_ids = {"train": np.concatenate([usable_ids[:train_videos], invalid_ids, missing_ids]),
                 "val": usable_ids[train_videos:train_videos + val_videos],
                 "test": usable_ids[train_videos + val_videos:]}
    for split, ids in split_ids.items():
        questions, lengths, vids, types = _questions(ids, per_video, rng)
        answers = np.zeros(len(vids), dtype=np.int64)
        for i, (vid, qtype) in enumerate(zip(vids, types)):
            vid = int(vid)
            if vid not in data.colour:
                answers[i] = 2
                continue
            if TEMPLATES[qtype][1] == "colour":
                answers[i] = ANSWERS.index(COLOURS[data.colour[vid]])
            else:
                answers[i] = ANSWERS.index(DIRECTIONS[data.direction[vid]])
        if split != "train" and answer_type == "open_ended":
            answers[::5] = 1
        glove_rows = len(vocab["question_answer_token_to_idx"]) if answer_type == "multiple_choice" \
            else len(QUESTION_TOKENS)
        payload = {"questions": questions, "questions_len": lengths, "question_id": np.arange(len(vids)) + 1000,
                   "video_ids": vids, "video_names": np.array([f"vid{v}" for v in vids]), "answers": answers,
                   "glove": rng.normal(0, 1, (glove_rows, glove_dim)).astype(np.float32)
                   if split == "train" else None}
        if answer_type == "multiple_choice":
            words = [ANSWERS[a] for a in answers]
            payload["ans_candidates"], payload["ans_candidates_len"], payload["answers"] = \
                _multiple_choice(words, extra_rng)
        elif answer_type == "count":
            payload["answers"] = np.array([3 * data.colour.get(int(v), 0) + data.direction.get(int(v), 0) + 1
                                           for v in vids], dtype=np.int64)
        if file_categories:
            payload["question_category"] = np.array([list(TEMPLATES).index(t) for t in types], dtype=np.int64)
        with open(data.question_path(split), "wb") as f:
            pickle.dump(payload, f, protocol=4)
    return data


def write_config(path: Path, data: TinyDataset, save_dir: Path, exp_name: str = "tiny", answer_type: str = "open_ended",
                 dataset_name: str | None = None, **sections) -> Path:
    """A run config for the tiny dataset and model; ``sections`` update config sections, e.g. train={...}.
    ``answer_type``: the dataset it names (:data:`TINY_DATASET_NAMES`; count configs use the mse term), unless
    ``dataset_name`` names one."""
    register_tiny_datasets()
    cfg = {
        "exp_name": exp_name, "seed": 3, "device": "cpu",
        "dataset": {"name": dataset_name or TINY_DATASET_NAMES[answer_type], "data_dir": str(data.data_dir), "appearance_feat": data.appearance_path.name,
                    "motion_feat": data.motion_path.name, "vocab_json": "tiny_vocab.json",
                    "train_question_pt": "tiny_train_questions.pt", "val_question_pt": "tiny_val_questions.pt",
                    "test_question_pt": "tiny_test_questions.pt", "save_dir": str(save_dir), "num_workers": 0,
                    "features_in_memory": False},  # the HDF5 path; tests that want memory say so
        "model": dict(TINY_MODEL),
        "train": {"batch_size": 8, "max_epochs": 2, "lr": 3e-3, "mode": "teacher"},
    }
    if answer_type == "count":
        cfg["losses"] = {"ce": None, "mse": {"weight": 1.0}}
    for section, values in sections.items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = values
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
