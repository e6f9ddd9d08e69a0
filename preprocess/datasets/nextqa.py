"""NExT-QA (Xiao et al. 2021): 5,440 videos, 5-way multiple-choice questions of 8 types in 3 groups.

Layout (the official repository's): ``train.csv``, ``val.csv``, ``test.csv`` (comma-separated, columns
``video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4``; ``answer`` is the index 0-4 of the right
candidate) and ``map_vid_vidorID.json`` (``{"<video>": "<folder>/<vidor id>"}``) in ``<dir>``, ``<dir>/nextqa/`` or
``<dir>/dataset/nextqa/``; videos ``<dir>/NExTVideo/<folder>/<vidor id>.mp4``. The videos to extract are those the
CSV files reference (without CSV files, every video of the map); one the map lacks is listed with a path that
cannot exist, so extraction records it as failed.

HCRN has no NExT-QA code; its conventions for multiple choice (TGIF-QA action/transition) are followed: the joint
``question_answer_token_to_idx`` vocabulary, candidates lower-cased and word-tokenised, ``question_id`` the
question's position in its split's file (NExT-QA's own key ``<video>_<qid>`` is the row's ``video_ids`` and
``qid``), ``video_ids`` and ``video_names`` the ``video`` column (video_names as HCRN writes them: the id again).
Questions are tokenised as NExT-QA's own loader does (``dataloader/sample_loader.py``:
``nltk.tokenize.word_tokenize(str(text).lower())``): the whole lower-cased question, nothing dropped. Almost no
NExT-QA question ends in '?' (dropping the last character as HCRN does for MSVD-QA would cut the last word); the
three real ones that do (val.csv line 3483, test.csv lines 6266 and 7987) keep '?' as their last token, as there.
NExT-QA's loader keeps the first 25 tokens of a question; the question files here keep up to
``--max_question_length`` (64 by default, cut questions counted), so the 3 real questions longer than 25 tokens
keep more words here than in NExT-QA's own models.
Categories: the ``type`` column, numbered in ``TYPES`` order and pooled into the causal / temporal / descriptive
groups.
"""
from __future__ import annotations

import re
from pathlib import Path

from preprocess.datasets import register_dataset
from preprocess.datasets.base import QA_SPLITS, Dataset, DatasetLayoutError, QAEntry, VideoEntry
from preprocess.datasets.qa_csv import Row, find_file, parse_int, read_table
from preprocess.question_file import read_json
from preprocess.text import word_tokenize
from utils.text import short_repr

TYPES = ("CW", "CH", "TN", "TC", "TP", "DL", "DC", "DO")
GROUPS = {"causal": ("CW", "CH"), "temporal": ("TN", "TC", "TP"), "descriptive": ("DL", "DC", "DO")}
CANDIDATE_COLUMNS = ("a0", "a1", "a2", "a3", "a4")
COLUMNS = ("video", "question", "answer", "qid", "type", *CANDIDATE_COLUMNS)
ANNOTATION_FOLDERS = ("nextqa", "dataset/nextqa")
VIDEO_MAP = "map_vid_vidorID.json"
_MAP_VALUE = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")
VIDEO_DIR = "NExTVideo"


def tokenize_nextqa_question(question: str) -> list[str]:
    """NExT-QA's own tokens of a question: ``word_tokenize(question.lower())``, a final '?' kept as a token."""
    return word_tokenize(question.lower())


def read_video_map(path: Path) -> dict[int, str]:
    """``map_vid_vidorID.json`` -> {video id: "<folder>/<vidor id>"}."""
    if not path.is_file():
        raise DatasetLayoutError(f"NExT-QA needs {path} (video id -> '<folder>/<vidor id>')")
    raw = read_json(path, DatasetLayoutError)
    if not isinstance(raw, dict):
        raise DatasetLayoutError(f"{path}: expected a JSON object mapping video ids to '<folder>/<vidor id>'")
    mapping = {}
    for key, value in raw.items():
        video_id = parse_int(key)
        if video_id is None or not isinstance(value, str) or not _MAP_VALUE.fullmatch(value):
            # the value becomes a path under the video folder: no '..', no absolute path, nothing but names
            raise DatasetLayoutError(f"{path}: entry {short_repr(key)}: {short_repr(value)} is not '<video id>': "
                                     "'<folder>/<vidor id>' (letters, digits, '_' and '-' separated by '/')")
        mapping[video_id] = value
    return mapping


@register_dataset
class NExTQA(Dataset):
    name = "nextqa"
    aliases = ("next-qa",)
    answer_type = "multiple_choice"
    category_names = TYPES
    category_source = "file"
    category_groups = GROUPS
    num_candidates = 5
    default_num_clips = 16      # NExT-QA's released features: 16 clips per video
    default_answer_top = None
    question_mark = False

    def split_source(self, dataset_dir: Path, split: str) -> Path:
        return find_file(dataset_dir, f"{split}.csv", ANNOTATION_FOLDERS)

    @staticmethod
    def _row_problem(fields: dict, tokens: list) -> str | None:
        missing = [name for name in COLUMNS if fields.get(name) is None]
        if missing:
            return f"the row ends before column {', '.join(repr(m) for m in missing)}"
        if parse_int(fields["video"]) is None:
            return f"'video' is not a non-negative integer: {fields['video']!r}"
        if not tokens:
            return f"empty question: {fields['question']!r}"
        answer = parse_int(fields["answer"])
        if answer is None or answer >= len(CANDIDATE_COLUMNS):
            return f"'answer' is not a candidate index 0-4: {fields['answer']!r}"
        if fields["type"].strip() not in TYPES:
            return f"'type' {fields['type']!r} is not one of {', '.join(TYPES)}"
        empty = [name for name in CANDIDATE_COLUMNS if not word_tokenize(fields[name].lower())]
        if empty:
            return f"empty candidate {', '.join(empty)}"
        return None

    def read_split(self, dataset_dir: Path, split: str):
        path = self.split_source(dataset_dir, split)
        entries, problems = [], []
        for row in read_table(path, COLUMNS, delimiter=","):
            fields = row.fields
            question = fields.get("question")
            tokens = tokenize_nextqa_question(question) if question else []
            problem = self._row_problem(fields, tokens)
            if problem is not None:
                problems.append(f"line {row.line} (video {fields.get('video')}, qid {fields.get('qid')}): {problem}")
                continue
            video_id = parse_int(fields["video"])
            entries.append(QAEntry(row.index, row.index, video_id, tokens, parse_int(fields["answer"]),
                                   category=TYPES.index(fields["type"].strip()),
                                   candidates=[word_tokenize(fields[name].lower()) for name in CANDIDATE_COLUMNS],
                                   text=question))
        return entries, problems

    def list_videos(self, dataset_dir: Path) -> list[VideoEntry]:
        mapping = read_video_map(find_file(dataset_dir, VIDEO_MAP, ANNOTATION_FOLDERS))
        referenced = set()
        for split in QA_SPLITS:
            path = self.split_source(dataset_dir, split)
            if path.is_file():
                rows: list[Row] = read_table(path, ("video",), delimiter=",")
                referenced.update(v for v in (parse_int(row.fields["video"]) for row in rows) if v is not None)
        video_ids = referenced or set(mapping)
        # An id the map lacks gets a path that cannot exist, so extraction reports it as failed.
        paths = {video_id: mapping.get(video_id, f"<{video_id} not in map>") for video_id in video_ids}
        return [VideoEntry(video_id, dataset_dir / VIDEO_DIR / f"{paths[video_id]}.mp4") for video_id in sorted(paths)]
