"""Majority and per-type-majority answer baselines: a hand-counted example and the tiny question files."""
import json
import pickle
from collections import Counter

import numpy as np
import pytest

from train_fixtures import ANSWERS, QUESTION_TOKENS, write_tiny_dataset
from training.baselines import baselines_from_files, prior_baselines
from training.metrics import TYPE_NAMES


def _types(*names):
    return np.array([TYPE_NAMES.index(n) for n in names])


def test_hand_counted_example():
    tokens = ["<UNK0>", "<UNK1>", "red", "blue", "left"]
    train_answers = np.array([2, 2, 3, 4, 4, 4, 0, 0, 0, 0])  # <UNK0> is most frequent but never chosen
    train_types = _types("what", "what", "who", "how", "how", "how", "what", "what", "what", "what")
    test_answers = np.array([2, 3, 4, 1, 2])                   # the <UNK1> answer is never correct
    test_types = _types("what", "who", "how", "what", "where")  # no "where" in train: the overall answer
    result = prior_baselines(train_answers, train_types, test_answers, test_types, tokens)
    assert result["majority"]["answer"] == "left" and result["majority"]["accuracy"] == pytest.approx(1 / 5)
    per_type = result["per_type_majority"]
    assert per_type["answers"] == {"what": "red", "who": "blue", "how": "left", "where": "left"}
    assert per_type["accuracy"] == pytest.approx(3 / 5)
    assert per_type["per_type"] == pytest.approx({"what": 0.5, "who": 1.0, "how": 1.0, "where": 0.0})
    assert result["majority"]["per_type"] == pytest.approx({"what": 0.0, "who": 0.0, "how": 1.0, "where": 0.0})


def test_from_question_files_matches_a_plain_count(tmp_path):
    data = write_tiny_dataset(tmp_path)
    load = lambda split: pickle.loads(data.question_path(split).read_bytes())  # noqa: E731
    train, test = load("train"), load("test")
    first_word = lambda q: QUESTION_TOKENS[q[0]]  # noqa: E731
    train_counts = Counter(ANSWERS[a] for a in train["answers"] if a >= 2)
    majority = train_counts.most_common(1)[0][0]
    by_type = {}
    for q, a in zip(train["questions"], train["answers"]):
        by_type.setdefault(first_word(q), Counter())[ANSWERS[a]] += 1
    hits = [(ANSWERS[a] == majority, ANSWERS[a] == by_type[first_word(q)].most_common(1)[0][0])
            for q, a in zip(test["questions"], test["answers"])]
    result = baselines_from_files(data.question_path("train"), data.question_path("test"),
                                  tmp_path / "tiny_vocab.json")
    assert result["majority"]["answer"] == majority
    assert result["majority"]["accuracy"] == pytest.approx(np.mean([h[0] for h in hits]))
    assert result["per_type_majority"]["accuracy"] == pytest.approx(np.mean([h[1] for h in hits]))
    assert json.loads(json.dumps(result)) == result


def test_question_only_baseline_by_hand():
    tokens = ["<UNK0>", "<UNK1>", "red", "blue", "left"]
    # question keys: "a" asked 3x in train (red, blue, blue), "b" once (left); test asks a, b and an unseen c
    train_keys = [b"a", b"a", b"a", b"b", b"c0"]
    train_answers = np.array([2, 3, 3, 4, 0])                   # c0's only answer is <UNK0>: never chosen
    train_types = _types("what", "what", "what", "how", "who")
    test_keys = [b"a", b"b", b"c", b"c0"]
    test_answers = np.array([3, 2, 3, 3])
    test_types = _types("what", "how", "who", "who")            # c, c0: the per-type ("who") fallback
    result = prior_baselines(train_answers, train_types, test_answers, test_types, tokens, train_keys, test_keys)
    # a -> blue (right), b -> left (wrong), c and c0 -> the "who" majority, which falls back to the overall "blue"
    assert result["question_only"]["accuracy"] == pytest.approx(3 / 4)
    assert result["question_only"]["per_type"] == pytest.approx({"what": 1.0, "how": 0.0, "who": 1.0})
    assert "question_only" not in prior_baselines(train_answers, train_types, test_answers, test_types, tokens)


def test_question_only_from_files_matches_a_plain_count(tmp_path):
    data = write_tiny_dataset(tmp_path)
    load = lambda split: pickle.loads(data.question_path(split).read_bytes())  # noqa: E731
    train, test = load("train"), load("test")
    text = lambda q, n: tuple(q[:n])  # noqa: E731
    by_text = {}
    for q, n, a in zip(train["questions"], train["questions_len"], train["answers"]):
        if a >= 2:
            by_text.setdefault(text(q, n), Counter())[int(a)] += 1
    result = baselines_from_files(data.question_path("train"), data.question_path("test"),
                                  tmp_path / "tiny_vocab.json")
    assert all(text(q, n) in by_text for q, n in zip(test["questions"], test["questions_len"]))  # no fallback here
    expected = [max(sorted(by_text[text(q, n)].items()), key=lambda item: item[1])[0] == a
                for q, n, a in zip(test["questions"], test["questions_len"], test["answers"])]
    assert result["question_only"]["accuracy"] == pytest.approx(np.mean(expected))
