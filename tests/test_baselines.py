"""Answer-prior baselines for every head: hand-counted open-ended, multiple-choice, count and FrameQA-like examples,
the tiny question files against numpy, and validate.py --compare's baseline as the same definition."""
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


def _load(path):
    with open(path, "rb") as f:
        return pickle.load(f)  # the test's own file


def test_multiple_choice_baselines_by_hand():
    """Most frequent right position in training (ties: lowest), per category the same; no question-only baseline."""
    train_answers = np.array([3, 3, 1, 1, 1, 0, 4, 4])
    train_types = np.array([0, 0, 1, 1, 1, 1, 0, 2])   # category 0: 3, 3, 4 -> 3; 1: 1, 1, 1, 0 -> 1; 2: 4
    test_answers = np.array([1, 3, 3, 4, 2, 1])
    test_types = np.array([0, 0, 1, 2, 3, 3])            # category 3 ("D") absent from training: overall answer 1
    names, groups = ("A", "B", "C", "D"), {"ab": ("A", "B"), "cd": ("C", "D")}
    result = prior_baselines(train_answers, train_types, test_answers, test_types, None, [b"q"] * 8, [b"q"] * 6,
                             head="multiple_choice", category_names=names, category_groups=groups)
    assert result["metric"] == "accuracy" and "question_only" not in result
    assert result["majority"]["answer"] == "candidate 1"
    assert result["majority"]["accuracy"] == pytest.approx(np.mean(test_answers == 1))
    assert result["majority"]["per_type"] == pytest.approx({"A": 0.5, "B": 0.0, "C": 0.0, "D": 0.5})
    per_type = result["per_type_majority"]
    assert per_type["answers"] == {"A": "candidate 3", "B": "candidate 1", "C": "candidate 4", "D": "candidate 1"}
    predicted = np.array([3, 3, 1, 4, 1, 1])
    assert per_type["accuracy"] == pytest.approx(np.mean(predicted == test_answers))
    assert per_type["per_group"] == pytest.approx({"ab": np.mean((predicted == test_answers)[:3]),
                                                   "cd": np.mean((predicted == test_answers)[3:])})


def test_count_baselines_by_hand():
    """Count: the rounded training mean (clamped to 1..10), scored by MSE; per category when there are any."""
    train_answers = np.array([1, 2, 2, 7, 9, 9])         # mean 5 -> 5; category 0: (1, 2, 2) -> 2; 1: 25/3 -> 8
    train_types = np.array([0, 0, 0, 1, 1, 1])
    test_answers = np.array([2, 5, 10, 8])
    test_types = np.array([0, 0, 1, 1])
    result = prior_baselines(train_answers, train_types, test_answers, test_types, head="count",
                             category_names=("few", "many"))
    assert result["metric"] == "MSE" and result["majority"]["answer"] == "5"
    assert result["majority"]["mse"] == pytest.approx(np.mean((test_answers - 5.0) ** 2))
    assert result["majority"]["per_type"] == pytest.approx({"few": (9 + 0) / 2, "many": (25 + 9) / 2})
    per_type = result["per_type_majority"]
    assert per_type["answers"] == {"few": "2", "many": "8"}
    assert per_type["mse"] == pytest.approx(np.mean((test_answers - np.array([2, 2, 8, 8])) ** 2))
    assert "accuracy" not in result["majority"] and "question_only" not in result
    none = prior_baselines(np.array([12, 14]), np.zeros(2), np.array([10, 3]), np.zeros(2), head="count",
                           category_names=())
    assert none["majority"]["answer"] == "10" and none["majority"]["per_type"] == {}  # mean 13 clamped to 10
    assert "per_type_majority" not in none
    # a mean of exactly k + 0.5 rounds up, as the count head's predictions (HCRN): 2.5 -> 3, 4.5 -> 5
    assert prior_baselines(np.array([2, 3]), np.zeros(2), np.array([3]), np.zeros(1), head="count",
                           category_names=())["majority"]["answer"] == "3"
    assert prior_baselines(np.array([4, 5, 4, 5]), np.zeros(4), np.array([3]), np.zeros(1), head="count",
                           category_names=())["majority"]["answer"] == "5"


def test_frameqa_unanswerable_is_unk_and_never_chosen():
    """A FrameQA-like vocabulary (<UNK> = 0, no <UNK0>/<UNK1>): <UNK> is never chosen and never correct."""
    tokens = ["<UNK>", "cat", "dog"]
    train_answers, test_answers = np.array([0, 0, 0, 2, 2, 1]), np.array([0, 2, 1, 2])
    result = prior_baselines(train_answers, np.zeros(6), test_answers, np.zeros(4), tokens,
                             category_names=("object",))
    assert result["majority"]["answer"] == "dog" and result["majority"]["accuracy"] == pytest.approx(2 / 4)
    always_unk = prior_baselines(np.array([0, 1]), np.zeros(2), np.array([0, 0]), np.zeros(2), tokens,
                                 category_names=("object",))
    assert always_unk["majority"]["answer"] == "cat" and always_unk["majority"]["accuracy"] == 0.0


def test_multiple_choice_and_count_files_match_numpy(tmp_path):
    from train_fixtures import FILE_CATEGORIES, FILE_GROUPS, register_tiny_datasets
    register_tiny_datasets()
    mc = write_tiny_dataset(tmp_path / "mc", answer_type="multiple_choice", file_categories=True)
    train, test = _load(mc.question_path("train")), _load(mc.question_path("test"))
    result = baselines_from_files(mc.question_path("train"), mc.question_path("test"), mc.data_dir / "tiny_vocab.json",
                                  "tiny-mc")
    position = np.bincount(train["answers"]).argmax()
    assert result["majority"]["answer"] == f"candidate {position}"
    assert result["majority"]["accuracy"] == pytest.approx(np.mean(test["answers"] == position))
    expected = np.array([np.bincount(train["answers"][train["question_category"] == c]).argmax()
                         for c in test["question_category"]])
    assert result["per_type_majority"]["accuracy"] == pytest.approx(np.mean(expected == test["answers"]))
    assert set(result["majority"]["per_type"]) <= set(FILE_CATEGORIES)
    members = [FILE_CATEGORIES.index(m) for m in FILE_GROUPS["causal"]]
    in_group = np.isin(test["question_category"], members)
    assert result["per_type_majority"]["per_group"]["causal"] == pytest.approx(
        np.mean((expected == test["answers"])[in_group]))

    count = write_tiny_dataset(tmp_path / "count", answer_type="count")
    train, test = _load(count.question_path("train")), _load(count.question_path("test"))
    result = baselines_from_files(count.question_path("train"), count.question_path("test"),
                                  count.data_dir / "tiny_vocab.json", "tiny-count")
    mean = int(np.clip(np.floor(train["answers"].mean() + 0.5), 1, 10))  # halves up, as HCRN
    assert result["metric"] == "MSE" and result["majority"]["answer"] == str(mean)
    assert result["majority"]["mse"] == pytest.approx(np.mean((test["answers"] - mean) ** 2.0))
    assert set(result) == {"metric", "majority"}  # no categories, no question-only baseline


@pytest.mark.parametrize("answer_type", ["open_ended", "multiple_choice"])
def test_compare_baseline_is_the_training_majority(tmp_path, answer_type):
    """validate.py --compare's baseline (training.evaluation.majority_baseline) and training.baselines give the same
    answer and the same score on the same files: one definition."""
    from train_fixtures import TINY_DATASET_NAMES, write_config
    from training.evaluation import SplitEvaluator, majority_baseline
    from training.run_schema import load_config
    data = write_tiny_dataset(tmp_path / "data", answer_type=answer_type,
                              file_categories=answer_type == "multiple_choice")
    cfg = load_config(write_config(tmp_path / "c.yml", data, tmp_path / "results", answer_type=answer_type))
    evaluator = SplitEvaluator(cfg, "test")
    try:
        shown = majority_baseline(evaluator)
    finally:
        evaluator.close()
    dataset = "msvd-qa" if answer_type == "open_ended" else TINY_DATASET_NAMES[answer_type]
    files = baselines_from_files(data.question_path("train"), data.question_path("test"),
                                 data.data_dir / "tiny_vocab.json", dataset)["majority"]
    assert shown == (files["answer"], pytest.approx(files["accuracy"]))


def test_tgif_qa_frameqa_and_count_layouts_match_numpy(tmp_path):
    """The synthetic TGIF-QA layout through question preprocessing: FrameQA's unanswerable answer is <UNK> = 0
    (never chosen, never correct) and its categories come from the file; count has none and is scored by MSE."""
    from layout_fixtures import preprocess_all, write_glove
    from preprocess.synthetic import write_synthetic
    write_synthetic("tgif-qa", tmp_path / "raw", num_videos=8)
    write_glove(tmp_path / "glove.pkl")
    files = {}
    for task in ("frameqa", "count"):
        vocab, split = preprocess_all("tgif-qa", tmp_path / "raw", tmp_path / "out", tmp_path / "glove.pkl", task=task)
        prefix = tmp_path / "out" / f"tgif-qa_{task}"
        files[task] = (vocab, split, baselines_from_files(f"{prefix}_train_questions.pt", f"{prefix}_test_questions.pt",
                                                          f"{prefix}_vocab.json", f"tgif-qa/{task}"))
    vocab, split, result = files["frameqa"]
    assert vocab["answer_token_to_idx"]["<UNK>"] == 0 and "<UNK1>" not in vocab["answer_token_to_idx"]
    train, test = split["train"], split["test"]
    assert (test["answers"] == 0).any()  # test answers outside the training answers
    majority = np.bincount(train["answers"][train["answers"] != 0]).argmax()
    tokens = sorted(vocab["answer_token_to_idx"], key=vocab["answer_token_to_idx"].get)
    assert result["majority"]["answer"] == tokens[majority]
    answerable = test["answers"] != 0
    assert result["majority"]["accuracy"] == pytest.approx(np.mean((test["answers"] == majority) & answerable))
    known = train["answers"] != 0
    by_category = {c: np.bincount(train["answers"][(train["question_category"] == c) & known]).argmax()
                   for c in np.unique(test["question_category"])}
    predicted = np.array([by_category[c] for c in test["question_category"]])
    assert result["per_type_majority"]["accuracy"] == pytest.approx(np.mean((predicted == test["answers"])
                                                                             & (test["answers"] != 0)))
    assert set(result["per_type_majority"]["answers"]) <= {"object", "number", "color", "location"}

    _, split, result = files["count"]
    mean = np.clip(np.round(split["train"]["answers"].mean()), 1, 10)
    assert result["metric"] == "MSE" and result["majority"]["answer"] == str(int(mean))
    assert result["majority"]["mse"] == pytest.approx(np.mean((split["test"]["answers"] - mean) ** 2))


def test_building_blocks_by_hand():
    from training import baselines as b
    assert b.value_key("count") == "mse" and b.value_key("open_ended") == b.value_key("multiple_choice") == "accuracy"
    assert b.never_chosen(["<UNK0>", "<UNK1>", "cat", "<UNK>", "dog"]) == [0, 1, 3] and b.never_chosen(None) == []
    assert b.majority(np.array([3, 1, 3, 1]), "multiple_choice") == 1                    # ties: the lowest
    assert b.majority(np.array([0, 0, 0, 2]), "open_ended", ["<UNK0>", "<UNK1>", "a"]) == 2
    assert b.majority(np.array([0, 1]), "open_ended", ["<UNK0>", "<UNK1>"]) is None
    assert b.majority(np.array([0, 0, 2]), "open_ended") == 0                            # no tokens: nothing excluded
    assert b.majority(np.array([], dtype=np.int64), "count") is None
    assert b.majority(np.array([7]), "count") == 7 and b.majority(np.array([0, 0]), "count") == 1
    assert b.majority(np.array([2, 2, 3]), "count") == 2                                 # 2.33 -> 2
    assert b.answer_label(2, "open_ended", ["x", "y", "cat"]) == "cat"
    assert b.answer_label(3, "multiple_choice") == "candidate 3" and b.answer_label(np.int64(4), "count") == "4"
    # outcomes: correctness (an answer equal to the unanswerable id never right), or the squared error
    assert b.outcomes(np.array([1, 2, 3]), np.array([1, 2, 0]), "open_ended", 1).tolist() == [0.0, 1.0, 0.0]
    assert b.outcomes(np.array([1, 2, 3]), np.array([1, 2, 0]), "open_ended", None).tolist() == [1.0, 1.0, 0.0]
    errors = b.outcomes(np.array([1, 4], dtype=np.uint8), np.array([3, 4], dtype=np.uint8), "count", None)
    assert errors.tolist() == [4.0, 0.0] and errors.dtype == np.float64
    # score: overall, per category present in the test split, per group (None when a group has no question)
    result = b.score(np.array([1, 2, 3, 3]), np.array([1, 0, 3, 2]), np.array([0, 0, 2, 2]), "open_ended",
                     ("a", "b", "c"), {"ab": ("a", "b"), "b": ("b",), "bc": ("b", "c")})
    assert result == {"accuracy": 0.5, "per_type": {"a": 0.5, "c": 0.5},
                      "per_group": {"ab": 0.5, "b": None, "bc": 0.5}}
    assert b.score(np.array([2, 5]), np.array([3, 5]), np.array([0, 0]), "count", ()) == {"mse": 0.5, "per_type": {}}


def test_question_keys_and_question_only_predictions_by_hand():
    from training import baselines as b
    keys = b._question_keys(np.array([[4, 5, 0], [4, 5, 6], [4, 0, 0]], dtype=np.int32), np.array([2, 3, 2]))
    assert keys[0] == np.array([4, 5], dtype=np.int64).tobytes() and keys[0] != keys[1]
    assert keys[2] == np.array([4, 0], dtype=np.int64).tobytes()
    predicted = b.question_only_predictions([b"a", b"a", b"a", b"b", b"b", b"c"], np.array([3, 2, 2, 5, 4, 1]),
                                            [b"a", b"b", b"c", b"d"], np.array([9, 9, 9, 9]), never=[1])
    assert predicted.tolist() == [2, 4, 9, 9] and predicted.dtype == np.int64  # b: tie 5/4 -> 4; c: only never
    assert b.question_only_predictions([b"a"], np.array([1]), [b"a"], np.array([7]), never=[]).tolist() == [1]


def test_split_categories_by_hand():
    from preprocess.datasets import get_dataset
    from training.baselines import split_categories
    msvd, svqa, count = get_dataset("msvd-qa"), get_dataset("svqa"), get_dataset("tgif-qa", "count")
    vocab = {"<NULL>": 0, "<UNK>": 1, "who": 2, "is": 3, "where": 4}
    data = {"questions": np.array([[2, 3], [4, 3], [3, 2]]), "answers": np.zeros(3)}
    assert split_categories(data, msvd, vocab).tolist() == [1, 4, 5]
    assert split_categories(data, count, vocab).tolist() == [0, 0, 0]
    assert split_categories({**data, "question_category": [14, 0, 3]}, svqa, vocab).tolist() == [14, 0, 3]
    with pytest.raises(ValueError, match="^f.pt: the dataset svqa reads categories from 'question_category', which "
                                         "the file lacks$"):
        split_categories(data, svqa, vocab, "f.pt")
    with pytest.raises(ValueError, match=r"^the question file: 'question_category' spans \[0, 15\] but svqa has 15 "
                                         "categories$"):
        split_categories({**data, "question_category": [0, 15, 1]}, svqa, vocab)
    with pytest.raises(ValueError, match=r"spans \[-1, 2\]"):
        split_categories({**data, "question_category": [-1, 2, 1]}, svqa, vocab)
    assert split_categories({**data, "question_category": [14, 14, 14]}, svqa, vocab).tolist() == [14, 14, 14]


def test_no_answer_to_give_is_refused():
    with pytest.raises(ValueError, match=r"^the training split has no answer a baseline can give \(none, or only "
                                         r"unknown answers\)$"):
        prior_baselines(np.array([0, 1]), np.zeros(2), np.array([2]), np.zeros(1), ["<UNK0>", "<UNK1>", "x"])


def test_per_type_and_question_only_answers_from_the_first_word_of_files(tmp_path):
    """baselines_from_files on the tiny MSVD-QA-like files: the per-type answers use the first word through the
    question vocabulary (what / who / ...), and the question-only baseline never answers an unknown answer."""
    data = write_tiny_dataset(tmp_path)
    train = pickle.loads(data.question_path("train").read_bytes())
    result = baselines_from_files(data.question_path("train"), data.question_path("test"),
                                  tmp_path / "tiny_vocab.json")
    expected = {}
    for q, a in zip(train["questions"], train["answers"]):
        if a >= 2:
            expected.setdefault(QUESTION_TOKENS[q[0]], Counter())[a] += 1
    answers = result["per_type_majority"]["answers"]
    assert answers and all(answers[t] == ANSWERS[min(c for c in counts if counts[c] == max(counts.values()))]
                           for t, counts in expected.items() if t in answers)
    assert set(answers) <= {"what", "who", "how", "when", "where"} and "other" not in answers
