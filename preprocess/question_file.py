"""Reading question files and vocabularies (ours and HCRN/DualVGR's), safely and with checked shapes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from utils.safe_pickle import load_pickle
from utils.text import short_repr

VOCAB_KEYS = ("question_token_to_idx", "answer_token_to_idx", "question_answer_token_to_idx")
_PER_QUESTION_KEYS = ("questions_len", "question_id", "video_ids", "video_names", "answers")
OPTIONAL_KEYS = ("ans_candidates", "ans_candidates_len", "question_category")  # multiple choice; file categories


class QuestionFileError(ValueError):
    """A question file or vocabulary is missing a key or has inconsistent shapes; the message names file and key."""


def load_question_file(path) -> dict:
    """Load ``<dataset>_<split>_questions.pt`` (ours or HCRN/DualVGR's) without running code from it.

    Returns a dict of numpy arrays, N questions, L_max tokens:
      questions (N, L_max) int, 0-padded; questions_len (N,) int64; question_id (N,) int64 (row index when the file
      has none); video_ids (N,) int64; video_names (N,) (video_ids when the file has none); answers (N,) int64;
      glove (V, word_dim) float32, or None (only the training file carries it); and, None where the file has
      none: ans_candidates (N, K, L_a) and ans_candidates_len (N, K) (multiple choice), question_category (N,)
      (datasets whose categories the file carries). The training data pipeline checks those against the dataset.
    Raises ``UnsafePickleError`` for a file that could run code, ``QuestionFileError`` for a malformed one.
    """
    path = Path(path)
    obj = load_pickle(path)
    if not isinstance(obj, dict):
        raise QuestionFileError(f"{path}: expected a dict of arrays, found {type(obj).__name__}")
    for key in ("questions", "questions_len", "video_ids", "answers"):
        if key not in obj:
            raise QuestionFileError(f"{path}: missing key '{key}' (found: {', '.join(map(str, obj))})")
    questions = np.asarray(obj["questions"])
    if questions.ndim != 2 or questions.dtype.kind not in "iu":
        raise QuestionFileError(f"{path}: 'questions' must be an (N, L) int matrix, got {questions.dtype} "
                                f"{questions.shape}")
    n = len(questions)
    out = {"questions": questions}
    for key in _PER_QUESTION_KEYS:
        if key in obj and obj[key] is not None:
            value = np.asarray(obj[key])
        elif key == "question_id":
            value = np.arange(n)
        elif key == "video_names":
            value = out["video_ids"]
        else:
            raise QuestionFileError(f"{path}: key '{key}' is None")
        if value.shape != (n,):
            raise QuestionFileError(f"{path}: '{key}' has shape {value.shape}, expected ({n},) like 'questions'")
        if key != "video_names":
            if value.dtype.kind not in "iu":
                raise QuestionFileError(f"{path}: '{key}' must hold integers, got {value.dtype}")
            value = value.astype(np.int64, copy=False)
        out[key] = value
    if n and (out["questions_len"].min() < 1 or out["questions_len"].max() > questions.shape[1]):
        raise QuestionFileError(f"{path}: 'questions_len' must lie in [1, {questions.shape[1]}]")
    glove = obj.get("glove")
    if glove is not None:
        glove = np.asarray(glove)
        if glove.ndim != 2 or glove.dtype.kind != "f":
            raise QuestionFileError(f"{path}: 'glove' must be a (V, word_dim) float matrix, got {glove.dtype} "
                                    f"{glove.shape}")
        glove = glove.astype(np.float32, copy=False)
    out["glove"] = glove
    for key in OPTIONAL_KEYS:
        out[key] = None if obj.get(key) is None else np.asarray(obj[key])
    return out


def read_json(path: Path, error=None):
    """Parse a UTF-8 JSON file; ``error`` (default QuestionFileError) names the file for text that is not UTF-8,
    not JSON, or an object listing a key twice."""
    error = error or QuestionFileError
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, object_pairs_hook=lambda pairs: _object_without_repeated_keys(pairs, path, error))
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8") from None
    except json.JSONDecodeError as e:
        raise error(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply (lists or objects about 1,000 levels deep)") from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        raise error(f"{path}: a value this JSON reader refuses ({' '.join(str(e).split())[:120]})") from None


def _object_without_repeated_keys(pairs: list, path: Path, error) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise error(f"{path}: the key {short_repr(repeated)} appears twice in one JSON object (the second would "
                    "silently replace the first)")
    return obj


def _index_problem(table: dict) -> str | None:
    """Why ``table`` (token -> index) does not use each of the indices 0..n-1 exactly once, or None."""
    token_of = {}
    for token, index in table.items():
        if not isinstance(index, int) or isinstance(index, bool):
            return f"the index of {token!r} is {json.dumps(index)}, not an integer"
        if not 0 <= index < len(table):
            return f"the index of {token!r} is {index}, outside 0..{len(table) - 1}"
        if index in token_of:
            return f"index {index} is given to both {token_of[index]!r} and {token!r}"
        token_of[index] = token
    return None  # n distinct indices in 0..n-1: exactly 0..n-1


def load_vocab(path) -> dict:
    """Load ``<dataset>_vocab.json``: a dict with the three token -> index maps of ``VOCAB_KEYS``.

    Each table must use the indices 0..n-1 exactly once (they are rows of the embedding and classifier;
    question_answer_token_to_idx is the embedding vocabulary of multiple-choice datasets): repeated, negative, boolean, non-integer or missing indices are refused.
    """
    path = Path(path)
    vocab = read_json(path)
    if not isinstance(vocab, dict):
        raise QuestionFileError(f"{path}: expected a JSON object, found {type(vocab).__name__}")
    for key in VOCAB_KEYS:
        table = vocab.get(key)
        if not isinstance(table, dict):
            raise QuestionFileError(f"{path}: '{key}' must be an object mapping tokens to integer ids")
        problem = _index_problem(table)
        if problem is not None:
            raise QuestionFileError(f"{path}: '{key}' must number its tokens 0..n-1, each index once: {problem}")
    return vocab


def first_nonfinite_row(matrix: np.ndarray) -> int | None:
    """Index of the first row of a (V, dim) float matrix holding NaN or inf, or None; reads it in slices of rows,
    so a 2.2 M-row GloVe matrix needs no full-size temporary."""
    step = max(1, (1 << 22) // max(1, matrix.shape[1]))
    for start in range(0, len(matrix), step):
        bad = np.flatnonzero(~np.isfinite(matrix[start:start + step]).all(axis=1))
        if len(bad):
            return start + int(bad[0])
    return None
