"""training/metrics.py against hand-computed values: which metric and direction per head, the unanswerable answer,
question types from the first token, per-category sums, columns, the dict form and the tables."""
import numpy as np
import pytest
import torch

from training import metrics
from training.metrics import ACCURACY, MSE, SplitAccuracy, score_by_category


def test_metric_and_direction_per_head():
    assert (metrics.metric_for("count"), metrics.metric_for("open_ended"), metrics.metric_for("multiple_choice")) \
        == ("MSE", "accuracy", "accuracy")
    assert (ACCURACY, MSE) == ("accuracy", "MSE")
    cases = [(ACCURACY, 0.5, None, True), (ACCURACY, 0.5, float("nan"), True), (ACCURACY, 0.5, 0.4, True),
             (ACCURACY, 0.4, 0.4, False), (ACCURACY, 0.3, 0.4, False), (MSE, 1.0, 2.0, True), (MSE, 2.0, 2.0, False),
             (MSE, 3.0, 2.0, False), (MSE, 3.0, None, True)]
    for metric, new, best, expected in cases:
        assert metrics.better(metric, new, best) is expected, (metric, new, best)


def test_unanswerable_answer_is_unk1_else_unk_for_open_ended_only():
    both = {"answer_token_to_idx": {"<UNK0>": 0, "<UNK1>": 1, "<UNK>": 5, "cat": 2}}
    assert metrics.unanswerable_answer(both, "open_ended") == 1
    assert metrics.unanswerable_answer({"answer_token_to_idx": {"<UNK>": 0, "cat": 1}}, "open_ended") == 0
    assert metrics.unanswerable_answer({"answer_token_to_idx": {"cat": 0}}, "open_ended") is None
    assert metrics.unanswerable_answer({}, "open_ended") is None
    assert metrics.unanswerable_answer(both, "multiple_choice") is None
    assert metrics.unanswerable_answer(both, "count") is None


def test_open_ended_and_multiple_choice_predictions_are_the_argmax():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 2.9]])
    assert metrics.predictions_from_logits(logits, "open_ended").tolist() == [1, 0]
    assert metrics.predictions_from_logits(logits, "multiple_choice").tolist() == [1, 0]


def test_display_names():
    assert [metrics.display_name(n) for n in ("what", "causal", "other", "CW", "query_color", "a1", "Who")] == \
        ["What", "Causal", "Other", "CW", "query_color", "a1", "Who"]


VOCAB = {"<NULL>": 0, "<UNK>": 1, "what": 2, "is": 3, "who": 4, "how": 5, "when": 6, "where": 7, "dog": 8}


def test_question_types_from_the_first_token():
    # what 0, who 1, how 2, when 3, where 4, anything else 5 ("other")
    assert metrics.token_type_lookup(VOCAB).tolist() == [5, 5, 0, 5, 1, 2, 3, 4, 5]
    assert metrics.token_type_lookup({"<NULL>": 0, "why": 1, "who": 2}).tolist() == [5, 5, 1]
    questions = np.array([[2, 3, 8], [4, 3, 0], [8, 2, 0], [7, 0, 0], [5, 6, 0], [6, 0, 0], [1, 2, 0], [0, 0, 0]])
    types = metrics.question_types(questions, VOCAB)
    assert types.tolist() == [0, 1, 5, 4, 2, 3, 5, 5] and types.dtype == np.int64
    assert metrics.question_types(np.zeros((0, 4), dtype=np.int32), VOCAB).tolist() == []
    for bad in (-1, 9):
        with pytest.raises(ValueError, match="^question token ids run outside the vocabulary of 9 tokens$"):
            metrics.question_types(np.array([[2, 3], [bad, 0]]), VOCAB)
    assert metrics.TYPE_NAMES == ("what", "who", "how", "when", "where", "other") and metrics.OTHER_TYPE == 5


def _grouped() -> SplitAccuracy:
    return SplitAccuracy(correct=[3, 0, 1], total=[4, 0, 2], names=("a", "b", "c"),
                         groups={"ab": ("a", "b"), "bc": ("b", "c")})


def test_split_accuracy_by_hand():
    acc = _grouped()
    assert acc.overall_correct == 4 and type(acc.overall_correct) is int and acc.overall_total == 6
    assert acc.overall == pytest.approx(4 / 6) and acc.lower_is_better is False
    assert acc.by_type() == {"a": 0.75, "b": None, "c": 0.5}
    assert acc.group_sums() == {"ab": (3, 4), "bc": (1, 2)} and acc.by_group() == {"ab": 0.75, "bc": 0.5}
    assert acc.columns() == [("All", pytest.approx(4 / 6), 6), ("A", 0.75, 4), ("B", None, 0), ("C", 0.5, 2),
                             ("Ab", 0.75, 4), ("Bc", 0.5, 2)]
    empty_group = SplitAccuracy(correct=[1, 0], total=[2, 0], names=("a", "b"), groups={"only_b": ("b",)})
    assert empty_group.by_group() == {"only_b": None} and empty_group.columns()[-1] == ("only_b", None, 0)
    assert np.isnan(SplitAccuracy(correct=[0], total=[0], names=("a",)).overall)
    mse = SplitAccuracy(correct=[2.5, 4.0], total=[2, 1], names=("x", "y"), metric=MSE)
    assert mse.overall_correct == 6.5 and mse.overall == pytest.approx(6.5 / 3) and mse.lower_is_better is True


def test_other_column_only_when_such_questions_exist():
    names = metrics.TYPE_NAMES
    none = SplitAccuracy(correct=[1, 0, 0, 0, 0, 0], total=[2, 1, 0, 0, 0, 0], names=names)
    assert [c[0] for c in none.columns()] == ["All", "What", "Who", "How", "When", "Where"]
    some = SplitAccuracy(correct=[1, 0, 0, 0, 0, 1], total=[2, 1, 0, 0, 0, 3], names=names)
    assert some.columns()[-1] == ("Other", pytest.approx(1 / 3), 3)
    first = SplitAccuracy(correct=[0, 1], total=[0, 2], names=("other", "x"))  # "other" skipped, not the rest
    assert [c[0] for c in first.columns()] == ["All", "X"]


def test_to_dict_by_hand():
    assert _grouped().to_dict() == {
        "metric": "accuracy", "all": pytest.approx(4 / 6), "count": 6, "correct": 4,
        "by_type": {"a": 0.75, "b": None, "c": 0.5}, "counts": {"a": 4, "b": 0, "c": 2},
        "correct_by_type": {"a": 3, "b": 0, "c": 1}, "by_group": {"ab": 0.75, "bc": 0.5},
        "group_counts": {"ab": 4, "bc": 2}, "groups": {"ab": ["a", "b"], "bc": ["b", "c"]}}
    mse = SplitAccuracy(correct=[2.5, 4.0], total=[2, 1], names=("x", "y"), metric=MSE).to_dict()
    assert mse == {"metric": "MSE", "all": pytest.approx(6.5 / 3), "count": 3, "squared_error": 6.5,
                   "by_type": {"x": 1.25, "y": 4.0}, "counts": {"x": 2, "y": 1},
                   "squared_error_by_type": {"x": 2.5, "y": 4.0}}


def test_correct_mask_by_hand():
    predictions, answers = torch.tensor([1, 2, 3, 1]), torch.tensor([1, 2, 0, 2])
    assert metrics.correct_mask(predictions, answers, 2).tolist() == [True, False, False, False]
    assert metrics.correct_mask(predictions, answers, None).tolist() == [True, True, False, False]
    assert metrics.correct_mask(predictions, answers, 7).tolist() == [True, True, False, False]


def test_score_by_category_sums_by_hand():
    # questions: (prediction, answer, type); -1 = not seen. Category c (index 2) has none, and comes last.
    predictions = torch.tensor([1, 2, -1, 3, 3])
    answers = torch.tensor([1, 1, 1, 3, 0])
    types = torch.tensor([0, 0, 1, 1, 0])
    acc = score_by_category(predictions, answers, types, ("a", "b", "c"), unanswerable=None)
    assert acc.correct == [1, 1, 0] and acc.total == [3, 1, 0]
    assert all(type(v) is int for v in acc.correct + acc.total) and acc.metric == ACCURACY and acc.groups == {}
    assert score_by_category(predictions, answers, types, ("a", "b", "c"), unanswerable=3).correct == [1, 0, 0]
    mse = score_by_category(predictions, answers, types, ("a", "b", "c"), metric=MSE, unanswerable=None)
    assert mse.correct == [0.0 + 1.0 + 9.0, 0.0, 0.0] and mse.total == [3, 1, 0]
    assert all(type(v) is float for v in mse.correct)
    alone = score_by_category(predictions, answers, torch.zeros(5, dtype=torch.long), (), unanswerable=None)
    assert alone.correct == [2] and alone.total == [4] and alone.names == ()
    grouped = score_by_category(predictions, answers, types, ("a", "b", "c"), {"g": ("a", "c")}, unanswerable=None)
    assert grouped.groups == {"g": ("a", "c")} and grouped.by_group() == {"g": pytest.approx(1 / 3)}
    default = score_by_category(predictions, answers, torch.tensor([0, 5, 5, 1, 0]), unanswerable=None)
    assert default.names == metrics.TYPE_NAMES and default.total == [2, 1, 0, 0, 0, 1]


def test_score_by_category_sums_the_heads_outcome_by_hand():
    """With ``head`` the head's per-question outcome is summed: correct (never for the unanswerable answer) or the
    squared error; an unseen question (prediction -1) counts nowhere."""
    predictions, answers = torch.tensor([2, -1, 3, 1]), torch.tensor([2, 2, 1, 1])
    types = torch.tensor([0, 0, 1, 1])
    open_ended = score_by_category(predictions, answers, types, ("a", "b"), unanswerable=1, head="open_ended")
    assert (open_ended.correct, open_ended.total) == ([1, 0], [1, 2])   # question 3's answer 1 is unanswerable
    choice = score_by_category(predictions, answers, types, ("a", "b"), unanswerable=None, head="multiple_choice")
    assert (choice.correct, choice.total) == ([1, 1], [1, 2])
    count = score_by_category(predictions, answers, types, ("a", "b"), metric=MSE, unanswerable=None, head="count")
    assert (count.correct, count.total, count.overall) == ([0.0, 4.0], [1, 2], 4.0 / 3)   # (3 - 1)^2 = 4


def test_formats_and_units():
    assert metrics.format_value(None) == "-" and metrics.format_value(None, MSE) == "-"
    assert metrics.format_value(0.5) == "50.00" and metrics.format_value(0.123456, ACCURACY) == "12.35"
    assert metrics.format_value(1.23456, MSE) == "1.235"
    assert metrics.metric_unit(MSE) == "MSE" and metrics.metric_unit(ACCURACY) == "accuracy (%)"


def test_accuracy_table_by_hand():
    assert metrics.accuracy_table(_grouped()) == "\n".join([
        "| Accuracy (%) | All | A | B | C | Ab | Bc |",
        "|---|---|---|---|---|---|---|",
        "| accuracy | 66.67 | 75.00 | - | 50.00 | 75.00 | 50.00 |",
        "| questions | 6 | 4 | 0 | 2 | 4 | 2 |"])
    mse = SplitAccuracy(correct=[2.5, 4.0], total=[2, 1], names=("x", "y"), metric=MSE)
    assert metrics.accuracy_table(mse, title="Test") == "\n".join([
        "| Test | All | X | Y |", "|---|---|---|---|", "| MSE | 2.167 | 1.250 | 4.000 |", "| questions | 3 | 2 | 1 |"])


def test_comparison_table_by_hand():
    names = metrics.TYPE_NAMES
    teacher = SplitAccuracy(correct=[2, 1, 0, 0, 0, 0], total=[4, 2, 0, 0, 0, 0], names=names)
    student = SplitAccuracy(correct=[3, 0, 0, 0, 0, 0], total=[4, 2, 0, 0, 0, 0], names=names)
    table = metrics.comparison_table([("Teacher", teacher, 31_194_700), ("Student", student, 1234)],
                                     baseline=("man", 0.25))
    assert table == "\n".join([
        "| Model | All | What | Who | How | When | Where | Parameters |",
        "|---|---|---|---|---|---|---|---|",
        "| majority answer ('man') | 25.00 | | | | | | |",
        "| Teacher | 50.00 | 50.00 | 50.00 | - | - | - | 31.19 M |",
        "| Student | 50.00 | 75.00 | 0.00 | - | - | - | 1,234 |",
        "| questions | 6 | 4 | 2 | 0 | 0 | 0 | |"])
    other = SplitAccuracy(correct=[1, 0, 0, 0, 0, 1], total=[1, 0, 0, 0, 0, 2], names=names)
    assert "| Other |" in metrics.comparison_table([("M", other, 1_000_000)]).splitlines()[0]
    assert "| M | 66.67 | 100.00 | - | - | - | - | 50.00 | 1.00 M |" in metrics.comparison_table([("M", other, 10**6)])
    grouped = metrics.comparison_table([("G", _grouped(), 10)], baseline=("x", 0.5))
    assert grouped == "\n".join(["| Model | All | A | B | C | Ab | Bc | Parameters |", "|---|---|---|---|---|---|---|---|",
                                 "| majority answer ('x') | 50.00 | | | | | | |",
                                 "| G | 66.67 | 75.00 | - | 50.00 | 75.00 | 50.00 | 10 |",
                                 "| questions | 6 | 4 | 0 | 2 | 4 | 2 | |"])
    mse = SplitAccuracy(correct=[2.5, 1.0], total=[2, 1], names=("x", "y"), groups={"xy": ("x", "y")}, metric=MSE)
    assert metrics.comparison_table([("C", mse, 1_995_000)], baseline=("3", 1.5)).splitlines()[2:4] == [
        "| majority answer ('3') | 1.500 | | | | |", "| C | 1.167 | 1.250 | 1.000 | 1.167 | 2.00 M |"]
    assert metrics.comparison_table([]) == "\n".join(
        ["| Model | All | What | Who | How | When | Where | Parameters |", "|---|---|---|---|---|---|---|---|"])
