"""The ``{train,val,test}_qa.json`` format MSVD-QA and MSRVTT-QA share: a JSON list of ``{"answer": str,
"id": int, "question": str, "video_id": int}`` per split, in ``<dir>`` or HCRN's ``<dir>/annotations/``.

Question ids in the question files are positions in the split's list (HCRN's ``question_id``), not the JSON ``id``.
"""
from __future__ import annotations

from pathlib import Path

from preprocess.datasets.base import QA_SPLITS, Dataset, DatasetLayoutError, QAEntry
from preprocess.question_file import QuestionFileError, read_json
from preprocess.text import QUESTION_TYPES, tokenize_question
from utils.progress import progress
from utils.text import short_repr


def qa_file(dataset_dir: Path, split: str) -> Path | None:
    """``<dir>/<split>_qa.json`` or ``<dir>/annotations/<split>_qa.json``, whichever exists, else None."""
    for candidate in (dataset_dir / f"{split}_qa.json", dataset_dir / "annotations" / f"{split}_qa.json"):
        if candidate.is_file():
            return candidate
    return None


def read_qa_video_ids(dataset_dir: Path) -> dict[str, set[int]]:
    """Video ids referenced by each present ``<split>_qa.json`` (absent splits are left out)."""
    referenced = {}
    for split in QA_SPLITS:
        path = qa_file(dataset_dir, split)
        if path is None:
            continue
        entries = read_json(path, DatasetLayoutError)
        if not isinstance(entries, list):
            raise DatasetLayoutError(f"{path}: expected a JSON list of questions, got {type(entries).__name__}")
        ids = set()
        for position, entry in enumerate(entries):
            video_id = entry.get("video_id") if isinstance(entry, dict) else None
            if not is_int(video_id):  # "7", true and 1.5 are no video ids
                raise DatasetLayoutError(f"{path}: entry {position} has no integer 'video_id' in [0, 2**63): "
                                         f"{short_repr(entry, 200)}")
            ids.add(video_id)
        referenced[split] = ids
    return referenced


def is_int(value) -> bool:
    """A JSON integer that fits the question files' int64 columns and is not negative (booleans are not)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _entry_problem(entry, tokens) -> str | None:
    """Why a JSON entry cannot be used, or None."""
    if not isinstance(entry, dict):
        return f"not an object but a {type(entry).__name__}"
    missing = [key for key in ("answer", "id", "question", "video_id") if key not in entry]
    if missing:
        return "missing key " + ", ".join(f"'{key}'" for key in missing)
    if not is_int(entry["id"]):
        return f"'id' is not an integer in [0, 2**63): {short_repr(entry['id'])}"
    if not is_int(entry["video_id"]):
        return f"'video_id' is not an integer in [0, 2**63): {short_repr(entry['video_id'])}"
    if not isinstance(entry["answer"], str) or not entry["answer"]:
        return f"'answer' is not a non-empty string: {short_repr(entry['answer'])}"
    if not isinstance(entry["question"], str):
        return f"'question' is not a string: {short_repr(entry['question'])}"
    if not tokens:
        return f"empty question: {short_repr(entry['question'])}"
    return None


def read_qa_json(path: Path) -> tuple[list[QAEntry], list[str]]:
    """Well-formed entries of a QA JSON list and one line per skipped entry.

    A question's id is its position in the list, as HCRN writes it (the JSON ``id`` is checked, then unused)."""
    try:
        raw = read_json(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"question file not found: {path}") from None
    if not isinstance(raw, list):
        raise QuestionFileError(f"{path}: expected a JSON list of questions, found {type(raw).__name__}")
    entries, problems = [], []
    for index, entry in enumerate(progress(raw, desc=f"tokenising {path.name}", unit="q", leave=False)):
        question = entry.get("question") if isinstance(entry, dict) else None
        tokens = tokenize_question(question) if isinstance(question, str) else []
        problem = _entry_problem(entry, tokens)
        if problem is not None:
            entry_id = entry.get("id", "?") if isinstance(entry, dict) else "?"
            problems.append(f"#{index} (id {entry_id}): {problem}")
            continue
        entries.append(QAEntry(index, index, entry["video_id"], tokens, entry["answer"], text=question))
    return entries, problems


def read_split_json(dataset_dir: Path, split: str) -> tuple[list[QAEntry], list[str]]:
    """The split's entries from ``<split>_qa.json`` (in ``dataset_dir`` or its ``annotations/``)."""
    path = qa_file(dataset_dir, split) or dataset_dir / f"{split}_qa.json"
    return read_qa_json(path)


class QAJsonDataset(Dataset):
    """What MSVD-QA and MSRVTT-QA share: open-ended questions in ``{train,val,test}_qa.json``, each typed by its
    first word (what / who / how / when / where, else other). A subclass declares its name, defaults and video
    layout (``list_videos``)."""
    answer_type = "open_ended"
    category_names = QUESTION_TYPES + ("other",)
    category_source = "first_word"

    def read_split(self, dataset_dir: Path, split: str) -> tuple[list[QAEntry], list[str]]:
        return read_split_json(dataset_dir, split)
