"""TGIF-QA (Jang et al. 2017), HCRN's four tasks: action and transition (5-way multiple choice), count (an integer,
trained by regression) and frameqa (open-ended, 4 question types).

Layout: tab-separated ``Train_<task>_question.csv`` and ``Test_<task>_question.csv`` in ``<dir>``, ``<dir>/csv/``
(HCRN's folder) or ``<dir>/dataset/`` (the official repository's); GIFs ``<dir>/gifs/<gif_name>.gif``. Columns:
``gif_name``, ``question``, ``answer``, ``key`` (the video id: the feature files' ``ids``); action/transition add
``a1``..``a5`` (the candidates; ``answer`` is the index 0-4 of the right one); frameqa adds ``type`` (0 object,
1 number, 2 color, 3 location).

As HCRN (preprocess/preprocess_questions.py and preprocess/datautils/tgif_qa.py of thaolmk54/hcrn-videoqa):
- each file's rows are shuffled by ``numpy.random.seed(666); numpy.random.permutation(n)`` (the first draw after
  seeding, so it is reproduced exactly with ``RandomState(666).permutation(n)``); the training file's first
  ``int(0.9 n)`` shuffled rows are train, the rest val; the test file's rows are written in their shuffled order;
- ``question_id`` is the question's position in its split's (shuffled) list, as HCRN writes ``idx``; the CSV line of
  a skipped row is named in the problem lines;
- the vocabulary is built from the whole training file (the val part included) in shuffled order;
- questions: lower-cased, last character dropped, word-tokenised; candidates: lower-cased, word-tokenised whole;
- count answers: ``max(int(answer), 1)``; multiple-choice answers: the candidate index; frameqa answers: the answer
  text (``<UNK>`` 0 then every training answer, in order of first appearance);
- ``video_ids`` the ``key``, ``video_names`` the ``gif_name``; the videos to extract are the distinct
  (gif_name, key) pairs of both files (HCRN reads ``Total_<task>_question.csv``, the two files together).
One deviation: HCRN gives a test FrameQA answer outside the training answers the id 1, which is the first training
answer (a real class); here it gets 0 (``<UNK>``), which is never counted correct.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from preprocess.datasets import register_dataset
from preprocess.datasets.base import Dataset, DatasetLayoutError, QAEntry, VideoEntry
from preprocess.datasets.qa_csv import Row, find_file, parse_int, read_table
from preprocess.text import tokenize_question, word_tokenize

TASKS = ("action", "transition", "count", "frameqa")
FRAMEQA_TYPES = ("object", "number", "color", "location")
CANDIDATE_COLUMNS = ("a1", "a2", "a3", "a4", "a5")
CSV_FOLDERS = ("csv", "dataset")
GIF_DIR = "gifs"
HCRN_SEED = 666
HCRN_TRAIN_FRACTION = 0.9


def hcrn_order(num_rows: int) -> np.ndarray:
    """HCRN's shuffled row order of a file of ``num_rows`` data rows: (num_rows,) int64."""
    return np.random.RandomState(HCRN_SEED).permutation(num_rows)


@register_dataset
class TGIFQA(Dataset):
    name = "tgif-qa"
    aliases = ("tgif",)
    tasks = TASKS
    default_num_clips = 8       # HCRN's preprocess_features.py default (8 clips x 16 frames)
    default_answer_top = None   # frameqa: every training answer (HCRN)

    def __init__(self, task: str | None = None):
        super().__init__(task)
        self.answer_type = {"action": "multiple_choice", "transition": "multiple_choice", "count": "count",
                            "frameqa": "open_ended"}[task]
        self.category_names = FRAMEQA_TYPES if task == "frameqa" else ()
        self.category_source = "file"
        self.num_candidates = 5 if self.answer_type == "multiple_choice" else 0

    # ------------------------------------------------------------------------------------------------ files
    def _columns(self) -> tuple:
        if self.answer_type == "multiple_choice":
            extra = CANDIDATE_COLUMNS
        else:
            extra = ("type",) if self.task == "frameqa" else ()
        return ("gif_name", "question", "answer", "key", *extra)

    def split_source(self, dataset_dir: Path, split: str) -> Path:
        prefix = "Test" if split == "test" else "Train"
        return find_file(dataset_dir, f"{prefix}_{self.task}_question.csv", CSV_FOLDERS)

    def _rows(self, path: Path) -> list[Row]:
        return read_table(path, self._columns(), delimiter="\t")

    # ------------------------------------------------------------------------------------------------ questions
    def _row_problem(self, fields: dict, tokens: list) -> str | None:
        missing = [name for name in self._columns() if fields.get(name) is None]
        if missing:
            return f"the row ends before column {', '.join(repr(m) for m in missing)}"
        if not fields["gif_name"].strip():
            return "empty 'gif_name'"
        if parse_int(fields["key"]) is None:
            return f"'key' is not a non-negative integer: {fields['key']!r}"
        if not tokens:
            return f"empty question: {fields['question']!r}"
        answer = parse_int(fields["answer"])
        if self.answer_type == "multiple_choice":
            if answer is None or answer >= len(CANDIDATE_COLUMNS):
                return f"'answer' is not a candidate index 0-4: {fields['answer']!r}"
            empty = [name for name in CANDIDATE_COLUMNS if not word_tokenize(fields[name].lower())]
            if empty:
                return f"empty candidate {', '.join(empty)}"
        elif self.answer_type == "count":
            if answer is None:
                return f"'answer' is not a non-negative integer count: {fields['answer']!r}"
        else:
            if not fields["answer"]:
                return "empty 'answer'"
            kind = parse_int(fields["type"])
            if kind is None or kind >= len(FRAMEQA_TYPES):
                return f"'type' is not 0-3: {fields['type']!r}"
        return None

    def _entry(self, row: Row, question_id: int, tokens: list) -> QAEntry:
        fields = row.fields
        entry = QAEntry(row.index, question_id, parse_int(fields["key"]), tokens, fields["answer"],
                        video_name=fields["gif_name"], text=fields["question"])
        if self.answer_type == "multiple_choice":
            entry.answer = parse_int(fields["answer"])
            entry.candidates = [word_tokenize(fields[name].lower()) for name in CANDIDATE_COLUMNS]
        elif self.answer_type == "count":
            entry.answer = max(parse_int(fields["answer"]), 1)
        else:
            entry.category = parse_int(fields["type"])
        return entry

    def read_split(self, dataset_dir: Path, split: str):
        path = self.split_source(dataset_dir, split)
        rows = self._rows(path)
        order = hcrn_order(len(rows))
        if split != "test":
            cut = int(HCRN_TRAIN_FRACTION * len(rows))
            order = order[:cut] if split == "train" else order[cut:]
        entries, problems = [], []
        for question_id, position in enumerate(order.tolist()):
            row = rows[position]
            question = row.fields.get("question")
            tokens = tokenize_question(question) if question else []
            problem = self._row_problem(row.fields, tokens)
            if problem is None:
                entries.append(self._entry(row, question_id, tokens))
            else:
                problems.append((row.line, f"line {row.line} (key {row.fields.get('key')}): {problem}"))
        return entries, [line for _, line in sorted(problems)]

    def vocabulary_entries(self, dataset_dir: Path, train_entries: list[QAEntry]) -> list[QAEntry]:
        val_entries, _ = self.read_split(dataset_dir, "val")
        return train_entries + val_entries  # the whole training file, in HCRN's shuffled order

    # ------------------------------------------------------------------------------------------------ videos
    def list_videos(self, dataset_dir: Path) -> list[VideoEntry]:
        gif_of_key = {}
        sources = [self.split_source(dataset_dir, split) for split in ("train", "test")]
        present = [path for path in sources if path.is_file()]
        if not present:
            raise DatasetLayoutError(f"neither {sources[0].name} nor {sources[1].name} in {dataset_dir} or its "
                                     f"{', '.join(CSV_FOLDERS)} folders")
        for path in present:
            for row in read_table(path, ("gif_name", "key"), delimiter="\t"):
                key, gif = parse_int(row.fields["key"]), (row.fields["gif_name"] or "").strip()
                if key is None or not gif:
                    continue  # a malformed row: its question is skipped (and listed) by the question preprocessing
                known = gif_of_key.setdefault(key, gif)
                if known != gif:
                    raise DatasetLayoutError(f"{path}:{row.line}: key {key} names gif {gif!r}, but an earlier row "
                                             f"gives it {known!r}; a key is one video")
        return [VideoEntry(key, dataset_dir / GIF_DIR / f"{gif_of_key[key]}.gif") for key in sorted(gif_of_key)]
