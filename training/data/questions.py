"""Question splits: a question file read and checked against the vocabulary (QuestionSplit, load_split), long
questions capped, and the policy for questions whose video has no features.

Val/test questions whose video has no usable features (missing from the feature files, or ``valid = 0``) are
scored like every other question, answered from all-zero features as HCRN/DualVGR's loaders do: the feature stores
reserve the video key ``M`` (the number of usable videos) for an all-zero video. ``eval.missing_features=exclude``
leaves them out of the accuracy denominator instead; :meth:`QuestionSplit.scoring_note` says which was done.
Training questions without features are skipped.

What a split carries besides the questions depends on the dataset (preprocess/datasets/, SPEC): its category per
question (``category_source`` first_word: from the first token, as MSVD-QA/MSRVTT-QA; file: the question file's
``question_category``), and for multiple choice the candidates ``ans_candidates`` (N, K, L_a) with
``ans_candidates_len`` (N, K), encoded, like the questions, with ``question_answer_token_to_idx``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.heads import DEFAULT_HEAD, get_head
from training.data.features import VideoTable
from preprocess.question_file import OPTIONAL_KEYS
from training.data.paths import DataError, require_file
from training.log import get_logger
from training.metrics import TYPE_NAMES, metric_for, question_types
from utils.config import ConfigError

SPLITS = ("train", "val", "test")
SPLIT_KEYS = {"train": "train_question_pt", "val": "val_question_pt", "test": "test_question_pt"}
MISSING_FEATURE_POLICIES = ("zeros", "exclude")  # config key eval.missing_features (val/test splits)


@dataclass
class QuestionSplit:
    """One split's scored questions. Arrays are (N, ...) numpy.

    ``video_key`` indexes the VideoTable (``zero_key`` for the ``zero_feature_questions`` answered from all-zero
    features); ``types`` the question category (index into ``category_names``; 0 when there are none).
    ``candidates`` (N, K, L_a) int64 and ``candidate_lengths`` (N, K) int64 for multiple choice, else None.
    ``head`` the answer type, ``unanswerable`` the answer id never counted correct (None: none).
    ``skipped_*`` count the questions left out
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
    head: str
    unanswerable: int | None   # no default: id 1 is a real answer for multiple choice and FrameQA
    candidates: np.ndarray | None = None         # (N, K, L_a) int64
    candidate_lengths: np.ndarray | None = None  # (N, K) int64
    category_names: tuple = TYPE_NAMES
    category_groups: dict = None
    skipped_missing: int = 0
    skipped_invalid: int = 0
    zero_feature_questions: int = 0
    missing_features: str = "skip"

    def __len__(self) -> int:
        return len(self.answers)

    @property
    def metric(self) -> str:
        return metric_for(self.head)

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


def _candidates(path: Path, key: str, extra: dict, n: int, num_tokens: int, max_length: int,
                num_candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """(candidates (N, K, L_a) int64, lengths (N, K) int64) of a multiple-choice question file, checked."""
    where = f"{path} (config key '{key}')"
    if extra.get("ans_candidates") is None or extra.get("ans_candidates_len") is None:
        raise DataError(f"{where}: a multiple-choice question file needs 'ans_candidates' and 'ans_candidates_len'")
    candidates, lengths = np.asarray(extra["ans_candidates"]), np.asarray(extra["ans_candidates_len"])
    if candidates.ndim != 3 or candidates.shape[0] != n or candidates.dtype.kind not in "iu":
        raise DataError(f"{where}: 'ans_candidates' must be an (N, K, L_a) int array with N = {n}, got "
                        f"{candidates.dtype} {candidates.shape}")
    if lengths.shape != candidates.shape[:2] or lengths.dtype.kind not in "iu":
        raise DataError(f"{where}: 'ans_candidates_len' must be (N, K) = {candidates.shape[:2]} ints, got "
                        f"{lengths.dtype} {lengths.shape}")
    if num_candidates and candidates.shape[1] != num_candidates:
        raise DataError(f"{where}: {candidates.shape[1]} candidates per question, the dataset has {num_candidates}")
    if candidates.size and (candidates.min() < 0 or candidates.max() >= num_tokens):
        raise DataError(f"{where}: candidate token ids span [{candidates.min()}, {candidates.max()}] but the "
                        f"embedding vocabulary (question_answer_token_to_idx) has {num_tokens} tokens")
    if lengths.size and (lengths.min() < 0 or lengths.max() > candidates.shape[2]):
        raise DataError(f"{where}: 'ans_candidates_len' must lie in [0, {candidates.shape[2]}]")
    lengths = np.minimum(lengths.astype(np.int64), max_length)
    width = max(int(lengths.max()) if lengths.size else 1, 1)
    return candidates[:, :, :width].astype(np.int64), lengths


def _categories(path: Path, key: str, spec, extra: dict, questions: np.ndarray, token_to_idx: dict) -> np.ndarray:
    """(N,) int64 category index per question (into ``spec.category_names``; 0 when it has none)."""
    names = tuple(spec.category_names) if spec is not None else TYPE_NAMES
    source = spec.category_source if spec is not None else "first_word"
    if not names:
        return np.zeros(len(questions), dtype=np.int64)
    if source == "first_word":
        return question_types(questions, token_to_idx)
    category = extra.get("question_category")
    where = f"{path} (config key '{key}')"
    if category is None:
        raise DataError(f"{where}: the dataset's categories come from the question file, which has no "
                        "'question_category' array")
    category = np.asarray(category)
    if category.shape != (len(questions),) or category.dtype.kind not in "iu":
        raise DataError(f"{where}: 'question_category' must be ({len(questions)},) ints, got {category.dtype} "
                        f"{category.shape}")
    if category.size and (category.min() < 0 or category.max() >= len(names)):
        raise DataError(f"{where}: 'question_category' spans [{category.min()}, {category.max()}] but the dataset "
                        f"has {len(names)} categories ({', '.join(names)})")
    return category.astype(np.int64)


def embedding_vocabulary(vocab: dict, head: str) -> dict:
    """The token -> index map of the word embedding (the head's): question_answer_token_to_idx for multiple choice
    (questions and candidates share it, as HCRN), question_token_to_idx otherwise."""
    return vocab[get_head(head).embedding_key()]


def load_split(name: str, path: Path, key: str, vocab: dict, table: VideoTable, max_question_length: int,
               missing_features: str = "skip", spec=None, head: str | None = None) -> QuestionSplit:
    """Read a question file and check it against the vocabulary and the dataset ``spec`` (a registered
    preprocess.datasets.Dataset; None = MSVD-QA-like: open-ended, first-word types), for the answer head ``head``
    (model/heads/; None: the one named by the dataset's answer type). Questions longer than
    ``max_question_length`` are cut; questions without usable video features are dropped (``missing_features`` skip
    or exclude) or given the all-zero video (zeros)."""
    head = head or (spec.answer_type if spec is not None else DEFAULT_HEAD)
    answer_head = get_head(head)
    data = _load_question_file(path, key)
    where = f"{path} (config key '{key}')"
    questions, lengths = _capped_questions(data["questions"], data["questions_len"], max_question_length, where)
    answers, video_ids, question_ids = (data[k] for k in ("answers", "video_ids", "question_id"))
    if len(answers) == 0:
        raise DataError(f"{where}: holds no questions")
    token_to_idx = embedding_vocabulary(vocab, head)
    num_tokens = len(token_to_idx)
    if questions.min() < 0 or questions.max() >= num_tokens:
        raise DataError(f"{where}: question token ids span [{questions.min()}, {questions.max()}] but the "
                        f"vocabulary has {num_tokens} tokens (is dataset.vocab_json the matching vocabulary?)")
    extra = {k: data[k] for k in OPTIONAL_KEYS}
    candidates = candidate_lengths = None
    num_candidates = 0
    if answer_head.uses_candidates:
        candidates, candidate_lengths = _candidates(path, key, extra, len(answers), num_tokens, max_question_length,
                                                    spec.num_candidates)
        num_candidates = candidates.shape[1]
    num_outputs = answer_head.num_outputs(len(vocab["answer_token_to_idx"]), num_candidates)
    problem = answer_head.check_answers(answers, num_outputs)
    if problem is not None:
        raise DataError(f"{where}: {problem}")
    types = _categories(path, key, spec, extra, questions, token_to_idx)
    keys = table.keys_for(video_ids)
    without = keys < 0
    zero_features = missing_features == "zeros"
    keep = np.ones_like(without) if zero_features else ~without
    keys = np.where(without, table.zero_key, keys)
    if len(keep) and not keep.any():
        raise DataError(f"{where}: none of its {len(keep)} questions has a video with usable features (missing from "
                        "the feature files or marked valid = 0)"
                        + ("; eval.missing_features=zeros scores them on all-zero features" if name != "train" else ""))
    invalid = 0 if zero_features else int(np.isin(video_ids[without], table.invalid_ids).sum())
    from training.metrics import unanswerable_answer
    return QuestionSplit(
        name=name, path=path, questions=questions[keep], lengths=lengths[keep], answers=answers[keep],
        video_ids=video_ids[keep], question_ids=question_ids[keep], video_key=keys[keep],
        types=types[keep], glove=data["glove"],
        candidates=None if candidates is None else candidates[keep],
        candidate_lengths=None if candidate_lengths is None else candidate_lengths[keep],
        head=head, unanswerable=unanswerable_answer(vocab, head),
        category_names=tuple(spec.category_names) if spec is not None else TYPE_NAMES,
        category_groups={g: tuple(m) for g, m in (spec.category_groups if spec is not None else {}).items()},
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
