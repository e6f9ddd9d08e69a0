"""The other heads end to end on CPU: per-category / grouped scores and the count metric against numpy, the question
files' candidates and categories in batches, teacher -> distilled student -> validate for multiple choice and
count, and a teacher of another head refused."""
import json

import numpy as np
import pytest
import torch

import train
import validate
from train_fixtures import FILE_CATEGORIES, FILE_GROUPS, NUM_CANDIDATES, write_config, write_tiny_dataset
from training.checkpoint import CheckpointError
from training.metrics import MSE, accuracy_table, predictions_from_logits, score_by_category
from utils.config import load_config

pytestmark = pytest.mark.usefixtures("single_thread")


def test_count_predictions_round_and_clamp_like_numpy():
    logits = torch.tensor([[-3.0], [0.4], [1.5], [2.49], [2.51], [9.6], [10.4], [55.0]])
    expected = np.clip(np.round(logits.numpy()[:, 0]), 1, 10).astype(np.int64)
    assert predictions_from_logits(logits, "count").tolist() == expected.tolist()
    assert predictions_from_logits(torch.tensor([[0.1, 0.7, 0.2]]), "multiple_choice").tolist() == [1]


def test_count_mse_per_category_matches_numpy():
    rng = np.random.default_rng(0)
    predictions, answers = rng.integers(1, 11, 50), rng.integers(1, 11, 50)
    types = rng.integers(0, 3, 50)
    predictions[7] = -1  # not seen: not counted
    acc = score_by_category(torch.from_numpy(predictions), torch.from_numpy(answers), torch.from_numpy(types),
                            ("a", "b", "c"), metric=MSE, unanswerable=None)
    seen = predictions >= 0
    error = (predictions - answers).astype(float) ** 2
    assert acc.overall == pytest.approx(error[seen].mean())
    for t, name in enumerate("abc"):
        assert acc.by_type()[name] == pytest.approx(error[seen & (types == t)].mean())
    assert acc.to_dict()["metric"] == "MSE" and "| MSE |" in accuracy_table(acc)
    none = score_by_category(torch.from_numpy(predictions), torch.from_numpy(answers), torch.zeros(50, dtype=torch.long),
                             (), metric=MSE, unanswerable=None)
    assert [c[0] for c in none.columns()] == ["All"] and none.overall == pytest.approx(error[seen].mean())


def test_grouped_accuracy_matches_numpy():
    rng = np.random.default_rng(1)
    names = FILE_CATEGORIES
    predictions, answers, types = rng.integers(0, 5, 80), rng.integers(0, 5, 80), rng.integers(0, len(names), 80)
    acc = score_by_category(torch.from_numpy(predictions), torch.from_numpy(answers), torch.from_numpy(types), names,
                            FILE_GROUPS, unanswerable=None)
    right = predictions == answers
    assert acc.overall == pytest.approx(right.mean())
    for t, name in enumerate(names):
        assert acc.by_type()[name] == pytest.approx(right[types == t].mean())
    for group, members in FILE_GROUPS.items():
        mask = np.isin(types, [names.index(m) for m in members])
        assert acc.by_group()[group] == pytest.approx(right[mask].mean())
    assert [c[0] for c in acc.columns()] == ["All", *names, "Causal", "Temporal"]
    # the open-ended unanswerable answer is never correct
    unk = score_by_category(torch.tensor([1, 2]), torch.tensor([1, 2]), torch.tensor([0, 0]), ("x",), unanswerable=1)
    assert unk.overall == 0.5


@pytest.fixture(scope="module")
def mc_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mc")
    return root, write_tiny_dataset(root / "data", answer_type="multiple_choice", file_categories=True)


@pytest.fixture(scope="module")
def count_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("count")
    return root, write_tiny_dataset(root / "data", answer_type="count")


def test_multiple_choice_batches_carry_candidates_and_file_categories(mc_data):
    from training.data import load_data
    root, data = mc_data
    cfg = load_config(write_config(root / "load.yml", data, root / "results", answer_type="multiple_choice"))
    bundle = load_data(cfg, show_progress=False)
    try:
        sig, split = bundle.signature, bundle.splits["train"]
        vocab = json.loads((data.data_dir / "tiny_vocab.json").read_text())
        assert sig.answer_type == "multiple_choice" and sig.num_answers == NUM_CANDIDATES
        assert sig.num_question_tokens == len(vocab["question_answer_token_to_idx"])
        raw = __import__("pickle").load(open(data.question_path("val"), "rb"))
        val = bundle.splits["val"]
        assert val.types.tolist() == raw["question_category"].tolist() and val.unanswerable is None
        assert val.candidates.shape[:2] == (len(val), NUM_CANDIDATES)
        batch = bundle.dataset("train")[np.array([0, 3, 5])]
        assert batch["candidates"].shape == (3, NUM_CANDIDATES, int(split.candidate_lengths[[0, 3, 5]].max()))
        assert batch["candidates"].dtype == torch.int64 and batch["candidates_len"].shape == (3, NUM_CANDIDATES)
        assert torch.equal(batch["candidates"], torch.from_numpy(split.candidates[[0, 3, 5], :, :2]))
    finally:
        bundle.close()


def _teacher_student_validate(root, data, answer_type, tmp):
    cfg = write_config(root / f"{answer_type}.yml", data, root / "results", answer_type=answer_type,
                       train={"max_epochs": 1})
    teacher = train.run(["--cfg", str(cfg), "--exp_name", "teacher"])
    best = root / "results/teacher/best.pt"
    student = train.run(["--cfg", str(cfg), "--exp_name", "student_kd", "--graph_layers", "1",
                         "--teacher_ckpt", str(best)])
    preds = tmp / "preds.json"
    result = validate.run(["--ckpt", str(root / "results/student_kd/best.pt"), "--write_preds", str(preds)])
    return teacher, student, result, json.loads(preds.read_text())


def test_multiple_choice_teacher_student_validate(mc_data, tmp_path):
    root, data = mc_data
    teacher, student, result, records = _teacher_student_validate(root, data, "multiple_choice", tmp_path)
    assert torch.load(root / "results/teacher/best.pt", weights_only=True)["model_config"]["head"] == "multiple_choice"
    kd = {k: v for k, v in student["history"][0].items() if k.startswith("train_kd_")}
    assert kd and all(v > 0 for v in kd.values())
    assert set(result["accuracy"]["by_type"]) == set(FILE_CATEGORIES)
    assert set(result["accuracy"]["by_group"]) == set(FILE_GROUPS)
    assert result["table"].splitlines()[0].startswith("| test accuracy (%) | All | CW |")
    assert len(records) == result["accuracy"]["count"]
    for r in records:
        assert 0 <= r["prediction_index"] < NUM_CANDIDATES and r["prediction"] == r["candidates"][r["prediction_index"]]
        assert r["correct"] == (r["prediction_index"] == r["answer_index"]) and r["type"] in FILE_CATEGORIES
    assert result["accuracy"]["correct"] == sum(r["correct"] for r in records)
    compared = validate.run(["--compare", str(root / "results/teacher/best.pt"), str(root / "results/student_kd/best.pt"),
                             "--names", "T", "S"])
    header = compared["markdown"]["table"].splitlines()[0]
    assert header == "| Model | All | CW | CH | TN | TC | DL | Causal | Temporal | Parameters |"
    answers = np.array(records and [r["answer_index"] for r in records])
    train_positions = __import__("pickle").load(open(data.question_path("train"), "rb"))["answers"]
    position = int(np.bincount(train_positions, minlength=NUM_CANDIDATES).argmax())  # the training majority
    assert compared["baseline"]["answer"] == f"candidate {position}"
    assert compared["baseline"]["accuracy"] == pytest.approx(np.mean(answers == position))
    assert [m["accuracy"]["all"] for m in compared["models"]][1] == pytest.approx(result["accuracy"]["all"])


def test_count_teacher_student_validate(count_data, tmp_path):
    root, data = count_data
    teacher, student, result, records = _teacher_student_validate(root, data, "count", tmp_path)
    assert "val_mse" in teacher["history"][0] and "val_acc" not in teacher["history"][0]
    assert result["accuracy"]["metric"] == "MSE" and "| MSE |" in result["table"]
    assert result["table"].splitlines()[0].startswith("| test MSE | All |")
    errors = [r["squared_error"] for r in records]
    assert all(1 <= int(r["prediction"]) <= 10 for r in records)
    assert result["accuracy"]["all"] == pytest.approx(np.mean(errors))
    test_results = json.loads((root / "results/student_kd/test_results.json").read_text())
    assert test_results["metric"] == "MSE" and "lowest val MSE" in test_results["selection"]
    history = student["history"]
    best = torch.load(root / "results/student_kd/best.pt", weights_only=True)
    assert best["best_metric"] == pytest.approx(min(row["val_mse"] for row in history))
    compared = validate.run(["--compare", str(root / "results/teacher/best.pt"), str(root / "results/student_kd/best.pt"),
                             "--names", "T", "S"])
    assert compared["metric"] == "MSE" and compared["baseline"] is None
    assert compared["markdown"]["table"].splitlines()[0] == "| Model | All | Parameters |"


def test_teacher_of_another_head_is_refused_in_one_line(mc_data, count_data):
    root, data = mc_data
    count_root, _ = count_data
    count_teacher = count_root / "results/teacher/best.pt"
    if not count_teacher.is_file():  # when run alone
        count_root, count = count_data
        cfg = write_config(count_root / "c.yml", count, count_root / "results", answer_type="count",
                           train={"max_epochs": 1})
        train.run(["--cfg", str(cfg), "--exp_name", "teacher"])
    cfg = write_config(root / "refuse.yml", data, root / "results", answer_type="multiple_choice",
                       train={"max_epochs": 1})
    with pytest.raises(CheckpointError) as error:
        train.run(["--cfg", str(cfg), "--exp_name", "refused", "--graph_layers", "1", "--teacher_ckpt",
                   str(count_teacher)])
    message = str(error.value)
    assert "\n" not in message and "count answer head" in message and "multiple_choice" in message
