"""What every dataset module provides: :class:`Dataset` (raw layout, video lookup, QA parsing, question categories,
answer type), the entries it yields (:class:`VideoEntry`, :class:`QAEntry`) and its error type."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

QA_SPLITS = ("train", "val", "test")
ANSWER_TYPES = ("open_ended", "multiple_choice", "count")
CATEGORY_SOURCES = ("first_word", "file")


class DatasetLayoutError(ValueError):
    """The dataset folder does not have the published layout (the message names the file or folder)."""


@dataclass(frozen=True)
class VideoEntry:
    """One video to extract: its id (the feature files' ``ids``) and where its file is expected."""
    video_id: int
    path: Path


@dataclass
class QAEntry:
    """One well-formed question of a split.

    ``answer``: the answer text (open-ended), the index 0..K-1 of the right candidate (multiple choice) or the
    count (count). ``category``: index into the dataset's ``category_names`` when the dataset defines categories
    per question (``category_source == "file"``), else None. ``candidates``: K token lists (multiple choice).
    """
    index: int            # position in the split's QA file
    question_id: int
    video_id: int
    tokens: list
    answer: str | int
    category: int | None = None
    candidates: list | None = None
    video_name: str = field(default="")
    text: str = ""        # the question as written (before tokenisation)


class Dataset:
    """One dataset. Subclasses set the class attributes and implement :meth:`list_videos` and :meth:`read_split`,
    and register with :func:`preprocess.datasets.register_dataset`.

    Class attributes:
      name               canonical name; names the output files (``<file_prefix>_vocab.json`` ...)
      aliases            other accepted spellings of ``name``
      tasks              the ``--question_type`` choices (TGIF-QA's four); () for a single-task dataset
      answer_type        open_ended | multiple_choice | count (ANSWER_TYPES); per task via :meth:`answer_type_of`
      category_names     the per-category result columns, in index order; () = no categories (only "All")
      category_source    first_word: a question's category is its first word (MSVD-QA/MSRVTT-QA question types);
                         file: the question file's ``question_category`` array indexes ``category_names``
      category_groups    result columns that pool several categories: {"causal": ("CW", "CH"), ...} (NExT-QA)
      num_candidates     candidates per multiple-choice question (0 otherwise)
      default_num_clips  clips per video of the reference configs
      default_answer_top size of the open-ended answer set (None: every training answer, HCRN's FrameQA
                         vocabulary: ``<UNK>`` 0 then the answers in order of first appearance)
      question_mark      True: questions end with '?' and HCRN drops their last character; False: they (mostly)
                         have none (NExT-QA), so the reader tokenises the whole question
    """
    name: str = ""
    aliases: tuple = ()
    tasks: tuple = ()
    answer_type: str = "open_ended"
    category_names: tuple = ()
    category_source: str = "first_word"
    category_groups: dict = {}
    num_candidates: int = 0
    default_num_clips: int = 8
    default_answer_top: int | None = 1000
    question_mark: bool = True

    def __init__(self, task: str | None = None):
        if self.tasks and task not in self.tasks:
            raise DatasetLayoutError(f"{self.name} needs a question type, one of {', '.join(self.tasks)} "
                                     f"(--question_type / dataset.question_type), got {task!r}")
        if not self.tasks and task is not None:
            raise DatasetLayoutError(f"{self.name} has no question types, got question type {task!r}")
        self.task = task

    @property
    def file_prefix(self) -> str:
        """Prefix of the files written for this dataset (and task): ``msvd-qa``, ``tgif-qa_action``."""
        return f"{self.name}_{self.task}" if self.task else self.name

    def list_videos(self, dataset_dir: Path) -> list[VideoEntry]:
        """Every video to extract, sorted by video_id (this order is the row order of the feature files)."""
        raise NotImplementedError

    def read_split(self, dataset_dir: Path, split: str) -> tuple[list[QAEntry], list[str]]:
        """The split's well-formed questions and one line per skipped malformed entry (naming index and id)."""
        raise NotImplementedError

    def split_source(self, dataset_dir: Path, split: str) -> Path:
        """The file a split's questions come from (named in messages)."""
        return dataset_dir / f"{split}_qa.json"

    def vocabulary_entries(self, dataset_dir: Path, train_entries: list[QAEntry]) -> list[QAEntry]:
        """The entries the vocabulary is built from: the training split's (TGIF-QA: its whole training file, the
        held-out validation part included, as HCRN builds it)."""
        return train_entries
