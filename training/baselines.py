"""Answer-prior baselines on the test split: what a model reaches without looking at the video.

- majority: always the most frequent training answer;
- per-type majority: for each question type (what / who / how / when / where / other), that type's most frequent
  training answer (the overall one for a type the training split lacks);
- question only: for each distinct question text, its most frequent training answer (the per-type majority answer
  for a question the training split lacks). A model that does not beat this does not use the video.

Answers are scored as the models are: a test answer outside the training answer set (``<UNK1>``) is never correct,
and training answers outside it (``<UNK0>``) are never chosen. Every question of the question files counts
(the models skip questions whose video has no features; the demo's videos all have them).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from preprocess.question_file import load_question_file, load_vocab
from training.metrics import TYPE_NAMES, UNANSWERABLE, question_types

FIRST_ANSWER = 2  # answer ids 0 and 1 are <UNK0> / <UNK1>


def _most_frequent(answers: np.ndarray, num_answers: int) -> int | None:
    """The most frequent answer id >= FIRST_ANSWER (lowest id on ties), or None when there is none."""
    counts = np.bincount(answers[answers >= FIRST_ANSWER], minlength=num_answers)
    return int(counts.argmax()) if counts.any() else None


def _score(predicted: np.ndarray, answers: np.ndarray, types: np.ndarray) -> dict:
    """{"accuracy", "per_type": {type name: accuracy}} of ``predicted`` (N,) answer ids against ``answers``."""
    correct = (predicted == answers) & (answers != UNANSWERABLE)
    per_type = {TYPE_NAMES[t]: float(correct[types == t].mean()) for t in np.unique(types)}
    return {"accuracy": float(correct.mean()), "per_type": per_type}


def _question_keys(questions: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    """One hashable key per question: its token ids up to its length. questions (N, L) int, lengths (N,)."""
    questions = np.ascontiguousarray(questions, dtype=np.int64)
    return [row[:length].tobytes() for row, length in zip(questions, lengths)]


def question_only_predictions(train_keys: list[bytes], train_answers: np.ndarray, test_keys: list[bytes],
                              fallback: np.ndarray) -> np.ndarray:
    """(N_test,) answer ids: each test question's most frequent training answer among the training questions with
    the same key (ids >= FIRST_ANSWER, lowest id on ties), ``fallback`` (N_test,) where there is none."""
    counts: dict[bytes, Counter] = {}
    for key, answer in zip(train_keys, train_answers):
        if answer >= FIRST_ANSWER:
            counts.setdefault(key, Counter())[int(answer)] += 1
    predicted = fallback.copy()
    for i, key in enumerate(test_keys):
        if key in counts:
            best = max(counts[key].values())
            predicted[i] = min(a for a, c in counts[key].items() if c == best)
    return predicted


def prior_baselines(train_answers: np.ndarray, train_types: np.ndarray, test_answers: np.ndarray,
                    test_types: np.ndarray, answer_tokens: list[str], train_keys: list[bytes] | None = None,
                    test_keys: list[bytes] | None = None) -> dict:
    """The baselines from (N,) answer ids and type indices (``training.metrics.TYPE_NAMES`` order); the
    question-only one too when ``train_keys`` / ``test_keys`` (one key per question, see ``_question_keys``) are
    given.

    Returns {"majority": {"answer", "accuracy", "per_type"}, "per_type_majority": {"answers": {type: answer},
    "accuracy", "per_type"}[, "question_only": {"accuracy", "per_type"}]} (fractions of the test questions).
    """
    overall = _most_frequent(train_answers, len(answer_tokens))
    if overall is None:
        raise ValueError("the training split has no answer inside the answer set")
    by_type = {}
    for t in np.unique(test_types):
        found = _most_frequent(train_answers[train_types == t], len(answer_tokens))
        by_type[int(t)] = overall if found is None else found
    per_type_prediction = np.array([by_type[int(t)] for t in test_types], dtype=np.int64)
    result = {"majority": {"answer": answer_tokens[overall],
                           **_score(np.full_like(test_answers, overall), test_answers, test_types)},
              "per_type_majority": {"answers": {TYPE_NAMES[t]: answer_tokens[a] for t, a in by_type.items()},
                                    **_score(per_type_prediction, test_answers, test_types)}}
    if train_keys is not None and test_keys is not None:
        predicted = question_only_predictions(train_keys, train_answers, test_keys, per_type_prediction)
        result["question_only"] = _score(predicted, test_answers, test_types)
    return result


def baselines_from_files(train_questions, test_questions, vocab_json) -> dict:
    """``prior_baselines`` of preprocessed question files (``<dataset>_<split>_questions.pt``) and vocabulary."""
    vocab = load_vocab(vocab_json)
    token_to_idx = vocab["question_token_to_idx"]
    answer_tokens = sorted(vocab["answer_token_to_idx"], key=vocab["answer_token_to_idx"].get)
    train, test = load_question_file(train_questions), load_question_file(test_questions)
    return prior_baselines(np.asarray(train["answers"]), question_types(train["questions"], token_to_idx),
                           np.asarray(test["answers"]), question_types(test["questions"], token_to_idx),
                           answer_tokens, _question_keys(train["questions"], train["questions_len"]),
                           _question_keys(test["questions"], test["questions_len"]))
