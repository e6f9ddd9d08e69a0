"""SVQA (Song et al. 2018): synthetic videos, open-ended questions in 15 categories given by their programs.

Layout (as DualVGR reads it): ``{train,val,test}_qa.json`` in ``<dir>`` or ``<dir>/annotations/``, each a JSON list
of ``{"id": int (the VIDEO id), "question": str, "ans": str, "program": [{"function": str, ...}, ...]}``; the id
may also be a string of decimal digits (``"12"``), which DualVGR's ``int(instance['id'])`` reads as 12; videos
``<dir>/useVideo/<id>.mp4`` (DualVGR's folder name), else ``<dir>/videos/<id>.mp4`` or ``<dir>/<id>.mp4``.

As DualVGR (preprocess/datautils/svqa.py): the category is the ``function`` of the program's LAST step, numbered
0-14 in ``CATEGORIES`` order; answers as MSVD-QA (``<UNK0>``, ``<UNK1>``, then the top answers; DualVGR's default
answer_top 4000 keeps every SVQA answer); ``video_ids`` and ``video_names`` the ``id``; ``question_id`` the
question's position in its split's file (DualVGR writes ``idx``: the files have no question id). The videos to
extract are those the QA files reference (a referenced video without a file is listed and fails at extraction).
"""
from __future__ import annotations

from pathlib import Path

from preprocess.datasets import register_dataset
from preprocess.datasets.base import QA_SPLITS, Dataset, DatasetLayoutError, QAEntry, VideoEntry
from preprocess.datasets.qa_json import is_int, qa_file
from preprocess.question_file import QuestionFileError, read_json
from preprocess.text import tokenize_question

CATEGORIES = ("count", "exist", "query_color", "query_size", "query_actiontype", "query_direction", "query_shape",
              "compare_more", "compare_equal", "compare_less", "attribute_compare_color", "attribute_compare_size",
              "attribute_compare_actiontype", "attribute_compare_direction", "attribute_compare_shape")
VIDEO_DIRS = ("useVideo", "videos", ".")


def _load_list(path: Path) -> list:
    try:
        raw = read_json(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"question file not found: {path}") from None
    if not isinstance(raw, list):
        raise QuestionFileError(f"{path}: expected a JSON list of questions, found {type(raw).__name__}")
    return raw


def _answer_text(value) -> str | None:
    """The answer as a string (SVQA's numeric answers may be written as JSON numbers), or None."""
    if isinstance(value, str) and value:
        return value
    if is_int(value):
        return str(value)
    return None


def video_id(value) -> int | None:
    """The video id of an entry's ``id``: a JSON integer, or a string of decimal digits (surrounding blanks allowed),
    as DualVGR's ``int(instance['id'])`` reads it; in [0, 2**63), else None (booleans, floats, signs, other text)."""
    if isinstance(value, str):
        text = value.strip()
        value = int(text) if text.isascii() and text.isdigit() else None
    return value if is_int(value) else None


def _entry_problem(entry, tokens) -> str | None:
    if not isinstance(entry, dict):
        return f"not an object but a {type(entry).__name__}"
    missing = [key for key in ("id", "question", "ans", "program") if key not in entry]
    if missing:
        return "missing key " + ", ".join(f"'{key}'" for key in missing)
    if video_id(entry["id"]) is None:
        return f"'id' (the video id) is not an integer (or digit string) in [0, 2**63): {entry['id']!r}"
    if _answer_text(entry["ans"]) is None:
        return f"'ans' is not a non-empty string: {entry['ans']!r}"
    if not isinstance(entry["question"], str):
        return f"'question' is not a string: {entry['question']!r}"
    if not tokens:
        return f"empty question: {entry['question']!r}"
    program = entry["program"]
    if not isinstance(program, list) or not program or not isinstance(program[-1], dict):
        return f"'program' is not a non-empty list of steps: {program!r:.80}"
    if program[-1].get("function") not in CATEGORIES:
        return f"the last program step's function {program[-1].get('function')!r} is not one of the 15 categories"
    return None


@register_dataset
class SVQA(Dataset):
    name = "svqa"
    aliases = ()
    answer_type = "open_ended"
    category_names = CATEGORIES
    category_source = "file"
    default_num_clips = 20      # the official KD release's SVQA config (DualVGR: configs/svqa_DualVGR_20.yml)
    default_answer_top = 4000   # DualVGR's default; SVQA has far fewer answers

    def split_source(self, dataset_dir: Path, split: str) -> Path:
        return qa_file(dataset_dir, split) or dataset_dir / f"{split}_qa.json"

    def read_split(self, dataset_dir: Path, split: str):
        path = self.split_source(dataset_dir, split)
        entries, problems = [], []
        for index, entry in enumerate(_load_list(path)):
            question = entry.get("question") if isinstance(entry, dict) else None
            tokens = tokenize_question(question) if isinstance(question, str) else []
            problem = _entry_problem(entry, tokens)
            if problem is not None:
                problems.append(f"#{index} (video id {entry.get('id', '?') if isinstance(entry, dict) else '?'}): "
                                f"{problem}")
                continue
            category = CATEGORIES.index(entry["program"][-1]["function"])
            entries.append(QAEntry(index, index, video_id(entry["id"]), tokens, _answer_text(entry["ans"]),
                                   category=category, text=question))
        return entries, problems

    def list_videos(self, dataset_dir: Path) -> list[VideoEntry]:
        video_ids = set()
        for split in QA_SPLITS:
            path = qa_file(dataset_dir, split)
            if path is None:
                continue
            for position, entry in enumerate(_load_list(path)):
                number = video_id(entry.get("id")) if isinstance(entry, dict) else None
                if number is None:
                    raise DatasetLayoutError(f"{path}: entry {position} has no integer 'id' (the video id): "
                                             f"{entry!r:.200}")
                video_ids.add(number)
        if not video_ids:
            raise DatasetLayoutError(f"no {{train,val,test}}_qa.json in {dataset_dir} or {dataset_dir / 'annotations'}")
        folders = [dataset_dir / name for name in VIDEO_DIRS]
        entries = []
        for number in sorted(video_ids):
            found = [folder / f"{number}.mp4" for folder in folders if (folder / f"{number}.mp4").is_file()]
            entries.append(VideoEntry(number, found[0] if found else folders[0] / f"{number}.mp4"))
        return entries
