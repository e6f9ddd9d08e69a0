"""Question splits: a question file read and checked against the vocabulary (QuestionSplit, load_split), long
questions capped, and the policy for questions whose video has no features.

Val/test questions whose video has no usable features (missing from the feature files, or ``valid = 0``) are
scored like every other question, answered from all-zero features as HCRN/DualVGR's loaders do: the feature stores
reserve the video key ``M`` (the number of usable videos) for an all-zero video. ``eval.missing_features=exclude``
leaves them out of the accuracy denominator instead; :meth:`QuestionSplit.scoring_note` says which was done.
Training questions without features are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.features import VideoTable
from training.data.paths import DataError, require_file
from training.log import get_logger
from training.metrics import question_types
from utils.config import ConfigError

SPLITS = ("train", "val", "test")
SPLIT_KEYS = {"train": "train_question_pt", "val": "val_question_pt", "test": "test_question_pt"}
MISSING_FEATURE_POLICIES = ("zeros", "exclude")  # config key eval.missing_features (val/test splits)


@dataclass
class QuestionSplit:
    """One split's scored questions. Arrays are (N, ...) numpy.

    ``video_key`` indexes the VideoTable (``zero_key`` for the ``zero_feature_questions`` answered from all-zero
    features); ``types`` the question type (metrics.TYPE_NAMES order). ``skipped_*`` count the questions left out
    (video missing from the feature files / marked valid = 0); ``missing_features`` is the policy applied:
    skip (training), zeros or exclude (MISSING_FEATURE_POLICIES).
    """
    name: str
    path: Path
    questions: np.ndarray      # (N, L) int64
    lengths: np.ndarray        # (N,) int64
    answers: np.ndarray        # (N,) int64
    video_ids: np.ndarray      # (N,) int64
    question_ids: np.ndarray   # (N,) int64
    video_key: np.ndarray      # (N,) int64
    types: np.ndarray          # (N,) int64
    glove: np.ndarray | None
    skipped_missing: int = 0
    skipped_invalid: int = 0
    zero_feature_questions: int = 0
    missing_features: str = "skip"

    def __len__(self) -> int:
        return len(self.answers)

    @property
    def excluded(self) -> int:
        return self.skipped_missing + self.skipped_invalid

    def scoring(self) -> dict:
        """How the split was scored: policy, questions in the file, scored, answered from zeros, excluded."""
        return {"missing_features": self.missing_features, "questions_in_file": len(self) + self.excluded,
                "questions_scored": len(self), "zero_feature_questions": self.zero_feature_questions,
                "excluded_questions": self.excluded, "note": self.scoring_note()}

    def scoring_note(self) -> str:
        """One line saying whether every question of the file is scored, and how those without features were."""
        total = len(self) + self.excluded
        if self.excluded:
            return (f"EXCLUDES {self.excluded} of {total} questions whose video has no features "
                    f"(eval.missing_features=exclude; the paper scores every question)")
        if self.zero_feature_questions:
            return (f"every question scored ({total}); {self.zero_feature_questions} answered from all-zero "
                    "features (video missing from the feature files or valid = 0)")
        return f"every question scored ({total}); all have video features"


def _load_question_file(path: Path, key: str) -> dict:
    """The question file's arrays (checked shapes; read without running code), errors naming ``key``."""
    from preprocess.question_file import QuestionFileError, load_question_file
    require_file(path, key)
    try:
        return load_question_file(path)
    except QuestionFileError as e:
        raise DataError(f"{e} (config key '{key}')") from None


def _capped_questions(questions: np.ndarray, lengths: np.ndarray, max_length: int,
                      where: str) -> tuple[np.ndarray, np.ndarray]:
    """questions (N, L) cut to (N, min(L, max_length, longest question)) int64 and lengths (N,) capped at
    ``max_length``; logs how many questions were cut (the loader's guard against a runaway question)."""
    too_long = int((lengths > max_length).sum())
    if too_long:
        get_logger().warning(f"{where}: {too_long} questions longer than {max_length} tokens keep their first "
                             f"{max_length} (dataset.max_question_length)")
    lengths = np.minimum(lengths, max_length)
    width = int(lengths.max()) if len(lengths) else 0
    return questions[:, :width].astype(np.int64), lengths


def load_split(name: str, path: Path, key: str, vocab: dict, table: VideoTable, max_question_length: int,
               missing_features: str = "skip") -> QuestionSplit:
    """Read a question file and check it against the vocabulary. Questions longer than ``max_question_length``
    are cut; questions without usable video features are dropped (``missing_features`` skip or exclude) or given
    the all-zero video (zeros)."""
    data = _load_question_file(path, key)
    where = f"{path} (config key '{key}')"
    questions, lengths = _capped_questions(data["questions"], data["questions_len"], max_question_length, where)
    answers, video_ids, question_ids = (data[k] for k in ("answers", "video_ids", "question_id"))
    if len(answers) == 0:
        raise DataError(f"{where}: holds no questions")
    num_tokens, num_answers = len(vocab["question_token_to_idx"]), len(vocab["answer_token_to_idx"])
    if questions.min() < 0 or questions.max() >= num_tokens:
        raise DataError(f"{where}: question token ids span [{questions.min()}, {questions.max()}] but the "
                        f"vocabulary has {num_tokens} tokens (is dataset.vocab_json the matching vocabulary?)")
    if answers.min() < 0 or answers.max() >= num_answers:
        raise DataError(f"{where}: answer ids span [{answers.min()}, {answers.max()}] but the vocabulary has "
                        f"{num_answers} answers (is dataset.vocab_json the matching vocabulary?)")
    keys = table.keys_for(video_ids)
    without = keys < 0
    zero_features = missing_features == "zeros"
    keep = np.ones_like(without) if zero_features else ~without
    keys = np.where(without, table.zero_key, keys)
    invalid = 0 if zero_features else int(np.isin(video_ids[without], table.invalid_ids).sum())
    return QuestionSplit(
        name=name, path=path, questions=questions[keep], lengths=lengths[keep], answers=answers[keep],
        video_ids=video_ids[keep], question_ids=question_ids[keep], video_key=keys[keep],
        types=question_types(questions[keep], vocab["question_token_to_idx"]), glove=data["glove"],
        skipped_missing=0 if zero_features else int(without.sum()) - invalid, skipped_invalid=invalid,
        zero_feature_questions=int(without.sum()) if zero_features else 0, missing_features=missing_features)


def missing_feature_policy(cfg) -> str:
    """``eval.missing_features`` (zeros when the config predates the key)."""
    policy = cfg.get("eval", {}).get("missing_features", "zeros")
    if policy not in MISSING_FEATURE_POLICIES:
        raise ConfigError(f"config key 'eval.missing_features' must be one of {', '.join(MISSING_FEATURE_POLICIES)}, "
                          f"got '{policy}'")
    return policy


def log_split_coverage(part: QuestionSplit) -> None:
    """Warn about the questions of a split whose video has no usable features, and say what was done."""
    log = get_logger()
    if part.missing_features == "skip" and part.excluded:
        log.warning(f"{part.name}: skipped {part.excluded} of {len(part) + part.excluded} questions whose video "
                    f"has no features ({part.skipped_invalid} invalid (valid=0), {part.skipped_missing} missing "
                    "from the HDF5 files)")
    elif part.excluded or part.zero_feature_questions:
        log.warning(f"{part.name}: {part.scoring_note()}")
