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
