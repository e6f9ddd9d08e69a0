"""The answer-head seam (model/heads/): each built-in head's predictions, outcomes, majority answer and answer text
against values worked out by hand; the registry; and a toy head registered in this file that trains, selects its
best checkpoint and validates end to end on the tiny dataset without any other file knowing of it."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import train
import validate
from model.heads import Head, get_head, head_names, metric_lower_is_better, register_head
from train_fixtures import write_config, write_tiny_dataset
from utils.config import REPO_ROOT

pytestmark = pytest.mark.usefixtures("single_thread")


# ------------------------------------------------------------------------------------------------ built-in heads
def test_the_built_in_heads_are_registered_under_todays_names():
    assert head_names()[:3] == ("open_ended", "multiple_choice", "count")
    with pytest.raises(ValueError, match="unknown answer head 'nope'; registered: open_ended, multiple_choice, count"):
        get_head("nope")
    assert get_head(get_head("count")) is get_head("count")


def test_open_ended_predictions_outcome_and_unanswerable_by_hand():
    head = get_head("open_ended")
    logits = torch.tensor([[0.1, 2.0, -1.0, 0.3], [3.0, 0.0, 0.0, 4.0], [0.0, 0.0, 5.0, 1.0]])
    predictions = head.predictions(logits)
    assert predictions.tolist() == [1, 3, 2]
    answers = torch.tensor([1, 3, 0])
    # question 0 predicts the unanswerable id 1 and it is the answer: never correct; question 1 right; 2 wrong
    assert head.outcome(predictions, answers, 1).tolist() == [0.0, 1.0, 0.0]
    assert head.outcome(predictions, answers, None).tolist() == [1.0, 1.0, 0.0]
    assert head.outcome(np.array([2, 2]), np.array([2, 1]), 1).tolist() == [1.0, 0.0]  # numpy alike
    assert head.unanswerable({"answer_token_to_idx": {"<UNK0>": 0, "<UNK1>": 1, "<UNK>": 2}}) == 1
    assert head.unanswerable({"answer_token_to_idx": {"<UNK>": 0, "cat": 1}}) == 0
    assert head.metric == "accuracy" and not head.lower_is_better and head.num_outputs(7, 5) == 7
    assert head.answer_text(2, ["<UNK0>", "<UNK1>", "cat"]) == "cat" and head.embedding_key() == "question_token_to_idx"


def test_multiple_choice_predictions_outcome_and_text_by_hand():
    head = get_head("multiple_choice")
    predictions = head.predictions(torch.tensor([[0.1, 0.7, 0.2], [0.9, -1.0, 0.0]]))
    assert predictions.tolist() == [1, 0]
    # candidate 1 is a real answer: with no unanswerable id it counts like any other
    assert head.outcome(predictions, torch.tensor([1, 2]), None).tolist() == [1.0, 0.0]
    assert head.num_outputs(1000, 5) == 5 and head.uses_candidates
    assert head.embedding_key() == "question_answer_token_to_idx"
    assert head.answer_text(1, None, ["a dog", "a cat", "a cow"]) == "a cat"
    assert head.baseline_label(3) == "candidate 3"
    assert head.answer_details(2, 0, ["x", "y", "z"]) == {"candidates": ["x", "y", "z"], "answer_index": 2,
                                                          "prediction_index": 0}


def test_count_predictions_outcome_and_text_by_hand():
    head = get_head("count")
    predictions = head.predictions(torch.tensor([[2.5], [0.2], [7.49], [11.0]]))
    assert predictions.tolist() == [3, 1, 7, 10]  # halves up, clamped to 1..10
    assert head.outcome(predictions, torch.tensor([3, 4, 5, 10]), None).tolist() == [0.0, 9.0, 4.0, 0.0]
    assert head.metric == "MSE" and head.lower_is_better and head.num_outputs(1000, 5) == 1
    assert head.answer_text(np.int64(4)) == "4" and head.probabilities(torch.zeros(2, 1)) is None
    assert head.answer_details(3, 5) == {"squared_error": 4.0}
    assert metric_lower_is_better("MSE") and not metric_lower_is_better("accuracy")
    assert head.check_answers(np.array([0, 3]), 1) is None and "found -1" in head.check_answers(np.array([-1]), 1)


def test_the_one_majority_definition_by_hand():
    """Most frequent training answer, lowest id on ties, never an unknown open-ended answer; the count head's prior
    is the rounded (halves up), clamped training mean."""
    tokens = ["<UNK0>", "<UNK1>", "red", "green"]
    assert get_head("open_ended").majority(np.array([1, 1, 1, 3, 2, 3, 2]), tokens) == 2  # 1 is <UNK1>; 2/3 tie
    assert get_head("open_ended").majority(np.array([0, 1]), tokens) is None
    assert get_head("multiple_choice").majority(np.array([4, 2, 4, 2, 0])) == 2
    assert get_head("count").majority(np.array([1, 2, 2, 2])) == 2      # mean 1.75 -> 2
    assert get_head("count").majority(np.array([2, 3])) == 3            # mean 2.5 -> 3 (halves up)
    assert get_head("count").majority(np.array([40, 60])) == 10         # clamped
    assert get_head("count").majority(np.array([], dtype=np.int64)) is None


def test_synthetic_statistics_use_the_one_majority_definition():
    """The synthetic generator's majority baseline is the open-ended head's: on a tie the first answer in
    training order (the lowest id of a vocabulary numbered in order of appearance)."""
    from preprocess.synthetic.msvd_qa import dataset_statistics
    train_qs = [{"answer": a, "question": "what is it", "video_id": 0, "id": i}
                for i, a in enumerate(["blue", "red", "red", "blue", "green"])]
    test_qs = [{"answer": a, "question": "what is it", "video_id": 1, "id": 9 + i}
               for i, a in enumerate(["blue", "red", "red"])]
    stats = dataset_statistics({"train": train_qs, "val": test_qs, "test": test_qs})
    assert stats["majority_answer"] == "blue" and stats["majority_baseline_test"] == pytest.approx(1 / 3)


def test_importing_the_head_registry_loads_no_torch():
    code = "import sys, model.heads as h; h.head_names(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------------ a toy head
class MeanClips(nn.Module):
    """(B, C, d) -> (B, d): the mean over clips (no parameters)."""

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return clips.mean(dim=1)


class LinearAnswers(nn.Module):
    """([V ; q] (B, 2d)) -> logits (B, A) with one Linear layer."""

    def __init__(self, module_dim: int, num_outputs: int):
        super().__init__()
        self.linear = nn.Linear(2 * module_dim, num_outputs)

    def forward(self, video: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.cat([video, question], dim=-1))


@register_head
class ToyHead(Head):
    """Open-ended answers with a linear output layer over the mean clip; records flag the toy."""
    name = "toy_linear"
    answer_format = "open_ended"
    answers_are_tokens = True
    readout_label = "mean over clips"
    output_label = "linear answers"

    def unanswerable(self, vocab):
        return get_head("open_ended").unanswerable(vocab)

    def build_output(self, module_dim, num_outputs, dropout):
        return MeanClips(), LinearAnswers(module_dim, num_outputs)

    def answer_details(self, answer, prediction, candidates=None):
        return {"toy": True}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_head")
    return root, write_tiny_dataset(root / "data")


def test_a_toy_head_from_this_file_trains_and_validates(tiny, tmp_path):
    root, data = tiny
    cfg = write_config(root / "toy.yml", data, root / "results", model={"head": "toy_linear"}, train={"max_epochs": 2})
    result = train.run(["--cfg", str(cfg), "--exp_name", "toy"])
    best = torch.load(root / "results/toy/best.pt", weights_only=True)
    assert best["model_config"]["head"] == "toy_linear" and best["answer_type"] == "toy_linear"
    d, answers = best["model_config"]["module_dim"], best["num_answers"]
    output = {k: v for k, v in best["model"].items() if k.startswith(("readout.", "classifier."))}
    assert {k: tuple(v.shape) for k, v in output.items()} == {"classifier.linear.weight": (answers, 2 * d),
                                                              "classifier.linear.bias": (answers,)}
    history = result["history"]
    assert best["best_metric"] == pytest.approx(max(row["val_acc"] for row in history))
    preds = tmp_path / "preds.json"
    validated = validate.run(["--ckpt", str(root / "results/toy/best.pt"), "--write_preds", str(preds)])
    records = json.loads(preds.read_text())
    assert len(records) == validated["accuracy"]["count"] and all(r["toy"] for r in records)
    assert validated["accuracy"]["correct"] == sum(r["correct"] for r in records)
    assert validated["accuracy"]["all"] == pytest.approx(np.mean([r["correct"] for r in records]))


def test_a_toy_head_must_read_the_datasets_answer_format(tiny):
    from utils.config import ConfigError
    root, data = tiny
    cfg = write_config(root / "bad.yml", data, root / "results", model={"head": "toy_linear"},
                       answer_type="count", train={"max_epochs": 1})
    with pytest.raises(ConfigError, match="model.head' is toy_linear, but dataset .* is count"):
        train.run(["--cfg", str(cfg), "--exp_name", "bad"])
