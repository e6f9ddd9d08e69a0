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
from training.run_schema import load_config

pytestmark = pytest.mark.usefixtures("single_thread")


def test_count_predictions_round_halves_up_and_clamp_as_hcrn():
    """HCRN's validate.py predicts ``(logits + 0.5).long().clamp(1, 10)``: halves round up (2.5 -> 3, where Python's
    and numpy's round give 2). Expected values by hand, then HCRN's rule written in numpy on random and tie logits."""
    ties = torch.tensor([[0.5], [1.5], [2.5], [3.5], [4.5], [6.5], [8.5], [9.5], [10.5], [-0.5]])
    assert predictions_from_logits(ties, "count").tolist() == [1, 2, 3, 4, 5, 7, 9, 10, 10, 1]
    logits = torch.tensor([[-3.0], [0.4], [1.49], [2.49], [2.51], [9.6], [10.4], [55.0]])
    assert predictions_from_logits(logits, "count").tolist() == [1, 1, 1, 2, 3, 10, 10, 10]
    values = np.concatenate([np.random.default_rng(0).uniform(-2, 13, 500), np.arange(-2, 13) + 0.5])
    hcrn = np.clip((values.astype(np.float32) + np.float32(0.5)).astype(np.int64), 1, 10)  # truncation as .long()
    got = predictions_from_logits(torch.from_numpy(values.astype(np.float32))[:, None], "count")
    assert got.tolist() == hcrn.tolist()
    # bf16 logits (train.amp=bf16) round the same way: halves are exact in bf16
    assert predictions_from_logits(ties.bfloat16(), "count").tolist() == [1, 2, 3, 4, 5, 7, 9, 10, 10, 1]
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


def test_the_unanswerable_answer_has_no_default():
    """Id 1 is a real answer for multiple choice and FrameQA: every scorer must be told which id (or None) is never
    correct, so a caller that forgets it fails instead of silently scoring answer 1 wrong."""
    import inspect
    from training.data.questions import QuestionSplit
    from training.engine import EpochTotals
    from training.metrics import correct_mask
    for scorer in (correct_mask, score_by_category, EpochTotals, QuestionSplit):
        parameter = inspect.signature(scorer).parameters["unanswerable"]
        assert parameter.default is inspect.Parameter.empty, scorer.__name__
    with pytest.raises(TypeError, match="unanswerable"):
        score_by_category(torch.tensor([1]), torch.tensor([1]), torch.tensor([0]), ("x",))
    # multiple choice: candidate 1 is as right as any other
    right = score_by_category(torch.tensor([1, 1, 0]), torch.tensor([1, 2, 0]), torch.tensor([0, 0, 0]), ("x",),
                              unanswerable=None)
    assert right.overall_correct == 2


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
