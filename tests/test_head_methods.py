"""Every method of the answer heads (model/heads/) that the trainer, validate.py, predict.py and the benchmarks call,
checked against values worked out by hand: answer and vocabulary checks, random answers, probabilities, the output
layer and its logits, predict.py's fields and lines, the loss-term fit, and the registry (names, order, errors).
Fast (no training run): the mutation targets head_* run this file."""
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from model.heads import Head, get_head, head_names, metric_lower_is_better, register_head
from model.heads import base

OPEN, CHOICE, COUNT = (get_head(name) for name in ("open_ended", "multiple_choice", "count"))


# ------------------------------------------------------------------------------------------------ data checks
def test_answer_ids_must_lie_in_the_outputs():
    assert OPEN.check_answers(np.array([0, 4, 2]), 5) is None
    assert OPEN.check_answers(np.array([3, 5]), 5) == ("answer ids span [3, 5] but there are 5 answers "
                                                       "(is dataset.vocab_json the matching vocabulary?)")
    assert OPEN.check_answers(np.array([-1, 2]), 5).startswith("answer ids span [-1, 2] but there are 5 answers")
    assert CHOICE.check_answers(np.array([0, 4]), 5) is None
    assert CHOICE.check_answers(np.array([0, 5]), 5).startswith(
        "answer ids span [0, 5] but there are 5 candidates per question (")
    # a count is any non-negative integer (its one output is no answer id)
    assert COUNT.check_answers(np.array([0, 12]), 1) is None
    assert COUNT.check_answers(np.array([3, -2, -1]), 1) == "count answers must be >= 0, found -2"


def test_vocabulary_sizes_that_cannot_build_a_head_are_refused():
    OPEN.check_outputs(2, 2)
    CHOICE.check_outputs(2, 2)
    COUNT.check_outputs(2, 1)
    for head, tokens, outputs, message in [
            (OPEN, 1, 5, "need at least 2 question tokens and 2 answers, got 1 and 5"),
            (OPEN, 5, 1, "need at least 2 question tokens and 2 answers, got 5 and 1"),
            (CHOICE, 5, 1, "need at least 2 question tokens and 2 candidates, got 5 and 1"),
            (COUNT, 5, 2, "the count head has one output (num_answers 1), got 2"),
            (COUNT, 5, 0, "the count head has one output (num_answers 1), got 0"),
            (COUNT, 1, 1, "need at least 2 question tokens, got 1")]:
        with pytest.raises(ValueError) as error:
            head.check_outputs(tokens, outputs)
        assert str(error.value) == message


def test_unanswerable_and_never_chosen_defaults():
    vocab = {"answer_token_to_idx": {"<UNK>": 0, "a": 1}}
    assert CHOICE.unanswerable(vocab) is None and COUNT.unanswerable(vocab) is None
    assert CHOICE.never_chosen(["<UNK0>", "<UNK1>"]) == [] and COUNT.never_chosen(None) == []
    assert OPEN.unanswerable({}) is None and OPEN.unanswerable({"answer_token_to_idx": {"a": 0}}) is None
    assert OPEN.never_chosen(["a", "<UNK>", "b", "<UNK0>", "<UNK1>"]) == [1, 3, 4]
    assert OPEN.never_chosen(None) == []


@pytest.mark.parametrize("head, outputs, values", [(OPEN, 3, {0, 1, 2}), (CHOICE, 4, {0, 1, 2, 3}),
                                                   (COUNT, 1, set(range(1, 11)))])
def test_random_answers_cover_exactly_the_accepted_answers(head, outputs, values):
    answers = head.random_answers(3000, outputs, torch.Generator().manual_seed(0))
    assert answers.shape == (3000,) and answers.dtype == torch.int64
    assert set(answers.tolist()) == values  # 3000 draws reach every value (each missing with p < 1e-130)
    again = head.random_answers(3000, outputs, torch.Generator().manual_seed(0))
    assert torch.equal(answers, again)  # the generator is used


# ------------------------------------------------------------------------------------------------ scoring
def test_probabilities_are_the_softmax_over_each_row_in_float32():
    logits = torch.tensor([[0.0, np.log(3.0)], [np.log(4.0), 0.0]], dtype=torch.float64)
    for head in (OPEN, CHOICE):
        p = head.probabilities(logits)
        assert p.dtype == torch.float32
        torch.testing.assert_close(p, torch.tensor([[0.25, 0.75], [0.8, 0.2]]))
    assert COUNT.probabilities(logits[:, :1]) is None


def test_outcomes_are_float64_for_tensors_and_arrays():
    for head in (OPEN, CHOICE, COUNT):
        assert head.outcome(torch.tensor([1, 2]), torch.tensor([1, 3]), None).dtype == torch.float64
        assert head.outcome(np.array([1, 2]), np.array([1, 3]), None).dtype == np.float64
    # a squared error that overflows int8 but not float64: 100^2 (the difference is cast before squaring)
    assert COUNT.outcome(torch.tensor([110], dtype=torch.int8), torch.tensor([10], dtype=torch.int8),
                         None).tolist() == [10000.0]
    assert COUNT.outcome(np.array([1, 10]), np.array([4, 2]), None).tolist() == [9.0, 64.0]


def test_count_predictions_read_low_precision_logits_as_float32():
    # 2.5 is exact in bfloat16: halves up gives 3; the prediction is int64 whatever the logits' dtype
    logits = torch.tensor([[2.5], [9.4]], dtype=torch.bfloat16, requires_grad=True)
    predictions = COUNT.predictions(logits)
    assert predictions.tolist() == [3, 9] and predictions.dtype == torch.int64
    assert OPEN.predictions(torch.tensor([[0.0, 1.0]], requires_grad=True)).tolist() == [1]


def test_count_prior_of_a_list_is_the_rounded_mean():
    assert COUNT.majority([1, 2]) == 2 and COUNT.majority([0, 0, 1]) == 1 and COUNT.majority([3, 4, 4]) == 4


# ------------------------------------------------------------------------------------------------ network
def test_output_layers_take_the_dropout_of_their_part():
    from model.fusion import AnswerClassifier, CandidateScorer, ClipReadout, ConditionedReadout
    dropout = {"readout": 0.125, "classifier": 0.375}
    readout, classifier = OPEN.build_output(8, 5, dropout)
    assert isinstance(readout, ClipReadout) and isinstance(classifier, AnswerClassifier)
    assert readout.dropout.p == 0.125
    assert classifier.input_dropout.p == 0.375 and classifier.hidden_dropout.p == 0.375
    readout.eval(), classifier.eval()
    out = classifier(readout(torch.randn(3, 4, 8)), torch.randn(3, 8))
    assert out.shape == (3, 5)
    readout, classifier = COUNT.build_output(8, 1, dropout)
    assert classifier.eval()(readout.eval()(torch.randn(2, 4, 8)), torch.randn(2, 8)).shape == (2, 1)
    readout, scorer = CHOICE.build_output(8, 4, dropout)
    assert isinstance(readout, ConditionedReadout) and isinstance(scorer, CandidateScorer)
    assert readout.dropout.p == 0.125
    assert scorer.input_dropout.p == 0.375 and scorer.hidden_dropout.p == 0.375


def test_default_logits_apply_the_readout_then_the_classifier():
    """logits = classifier(readout(V_c), q), worked out with stand-ins: readout sums the clips, the classifier
    multiplies by q."""
    model = SimpleNamespace(readout=lambda clips: clips.sum(dim=1), classifier=lambda video, q: video * q)
    fused = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])    # (1, 2 clips, 2)
    sentence = torch.tensor([[10.0, -1.0]])
    assert OPEN.logits(model, fused, sentence).tolist() == [[40.0, -6.0]]
    assert COUNT.logits(model, fused, sentence).tolist() == [[40.0, -6.0]]


# ------------------------------------------------------------------------------------------------ text
def test_answer_text_and_baseline_labels():
    assert OPEN.answer_text(np.int64(3)) == "3" and OPEN.answer_text(1, ["a", "b"]) == "b"
    assert OPEN.baseline_label(1, ["a", "b"]) == "b" and OPEN.baseline_label(4) == "4"
    assert COUNT.answer_text(7, ["a"] * 9) == "7" and COUNT.baseline_label(5, ["a"] * 9) == "5"
    assert CHOICE.answer_text(0, ["x"], ["first", "second"]) == "first"
    assert OPEN.answer_details(1, 2, ["x"]) == {} and COUNT.answer_details(2, 5) == {"squared_error": 9.0}


def _answer(head, prediction, probabilities, labels, scores):
    """A stand-in for inference.answering.Answer: its fields and ``top(k)``, the k most probable (label,
    probability) pairs, most probable first (sorted here by hand)."""
    pairs = [] if probabilities is None else sorted(zip(labels, probabilities), key=lambda pair: -pair[1])
    return SimpleNamespace(model="m", head=head, prediction=prediction, prediction_index=0,
                           probabilities=None if probabilities is None else np.array(probabilities), labels=labels,
                           scores=np.array(scores), top=lambda k: pairs[:k])


def test_predict_fields_and_lines_by_hand():
    # open-ended: the top answers, probabilities rounded to 6 places
    answer = _answer("open_ended", "dog", [0.1234567, 0.5, 0.3765433], ["cat", "dog", "cow"], [0.0, 1.0, 0.5])
    assert OPEN.prediction_fields(answer.scores, answer.probabilities, answer.labels, answer.top(2)) == {
        "top": [{"answer": "dog", "probability": 0.5}, {"answer": "cow", "probability": 0.376543}]}
    assert OPEN.describe(answer, 2) == "dog   (dog 0.500  cow 0.377)"
    assert OPEN.shown_answers(answer, 2) == [("dog", 0.5), ("cow", 0.3765433)]
    # multiple choice: every candidate in candidate order, with its raw score and probability
    answer = _answer("multiple_choice", "a cat", [0.25, 0.7500004], ["a dog", "a cat"], [0.1234564, 1.2])
    assert CHOICE.prediction_fields(answer.scores, answer.probabilities, answer.labels, answer.top(1)) == {
        "candidates": [{"candidate": "a dog", "score": 0.123456, "probability": 0.25},
                       {"candidate": "a cat", "score": 1.2, "probability": 0.75}]}
    assert CHOICE.describe(answer, 1) == "'a cat'   ([0] 'a dog' 0.250  [1] 'a cat' 0.750)"
    assert CHOICE.shown_answers(answer, 1) == [("a dog", 0.25), ("a cat", 0.7500004)]
    # count: the regression output
    answer = _answer("count", "3", None, None, [2.7182818])
    assert COUNT.prediction_fields(answer.scores, None, None, answer.top(3)) == {"count_output": 2.718282}
    assert COUNT.describe(answer, 3) == "3   (regression output 2.718)"
    assert COUNT.shown_answers(answer, 3) == []


# ------------------------------------------------------------------------------------------------ registry
def test_loss_terms_fit_by_head_name_or_answer_format():
    assert OPEN.fits_loss(()) and COUNT.fits_loss(())
    assert COUNT.fits_loss(("count",)) and not OPEN.fits_loss(("count",))
    assert CHOICE.fits_loss(("open_ended", "multiple_choice")) and not COUNT.fits_loss(("open_ended",))
    toy = SimpleNamespace(name="toy", answer_format="open_ended")
    assert Head.fits_loss(toy, ("open_ended",)) and Head.fits_loss(toy, ("toy",)) and not Head.fits_loss(toy, ("x",))


def test_registering_a_head_names_it_and_orders_it_after_the_built_in_ones(monkeypatch):
    # the built-in heads only (other test files register their own), and those registered here forgotten afterwards
    monkeypatch.setattr(base, "_HEADS", {name: get_head(name) for name in ("open_ended", "multiple_choice", "count")})

    @register_head
    class Zeta(Head):
        name = "zeta_head"
        metric = "zeta score"
        lower_is_better = True

    @register_head
    class Alpha(Head):
        name = "alpha_head"
        answer_format = "count"

    assert get_head("zeta_head").answer_format == "zeta_head" and get_head("alpha_head").answer_format == "count"
    assert isinstance(get_head("zeta_head"), Zeta)
    assert head_names() == ("open_ended", "multiple_choice", "count", "zeta_head", "alpha_head")
    assert metric_lower_is_better("zeta score") and not metric_lower_is_better("no such metric")
    with pytest.raises(ValueError) as error:
        get_head("beta_head")
    assert str(error.value) == ("unknown answer head 'beta_head'; registered: open_ended, multiple_choice, count, "
                                "zeta_head, alpha_head")

    class Nameless(Head):
        pass
    with pytest.raises(ValueError) as error:
        register_head(Nameless)
    assert str(error.value) == "Nameless: a head needs a name"


def test_the_metric_direction_of_the_built_in_heads():
    assert metric_lower_is_better("MSE") and not metric_lower_is_better("accuracy")
    assert not metric_lower_is_better("other")


def test_the_head_modules_are_imported_once_on_first_use(monkeypatch):
    """The registry imports :data:`HEAD_MODULES` on the first call only (importing model.heads loads no head)."""
    import model.heads as package
    monkeypatch.setattr(base, "_HEADS", {})
    monkeypatch.setattr(base, "_LOADED", False)
    for module in base.HEAD_MODULES:  # forgotten here, restored afterwards (the modules and the package's names)
        monkeypatch.delitem(sys.modules, module)
        monkeypatch.setattr(package, module.rsplit(".", 1)[1], getattr(package, module.rsplit(".", 1)[1]))
    assert head_names() == ("open_ended", "multiple_choice", "count") and base._LOADED is True
    for module in base.HEAD_MODULES:
        del sys.modules[module]
    assert get_head("count").name == "count" and metric_lower_is_better("MSE")
    assert not any(module in sys.modules for module in base.HEAD_MODULES)  # not imported a second time
