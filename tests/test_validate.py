"""validate.py: predictions equal an independent per-question forward; tables and comparisons add up."""
import json

import numpy as np
import pytest
import torch

import train
import validate
from train_fixtures import ANSWERS, QUESTION_TOKENS, write_config, write_tiny_dataset
from training.checkpoint import CheckpointError
from training.evaluation import compare_checkpoints, default_names, model_from_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")
TYPES = ("what", "who", "how", "when", "where")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread):
    root = tmp_path_factory.mktemp("validate")
    data = write_tiny_dataset(root / "data", seed=4)
    cfg = write_config(root / "tiny.yml", data, root / "results", train={"max_epochs": 1})
    train.run(["--cfg", str(cfg), "--exp_name", "teacher"])
    train.run(["--cfg", str(cfg), "--exp_name", "student", "--graph_layers", "1", "train.mode=student",
               "--seed", "5"])
    return root, data, cfg


def _independent_predictions(ckpt_path, data, split):
    """Run the model question by question on the fixture's own features (one video row per question)."""
    import pickle
    with open(data.question_path(split), "rb") as f:
        raw = pickle.load(f)
    model = model_from_checkpoint(torch.load(ckpt_path, weights_only=True), torch.device("cpu"))
    out = []
    with torch.no_grad():
        for q, length, vid in zip(raw["questions"], raw["questions_len"], raw["video_ids"]):
            logits = model(torch.from_numpy(data.appearance[int(vid)])[None], torch.from_numpy(data.motion[int(vid)])[None],
                           torch.from_numpy(q[:length].astype(np.int64))[None], torch.tensor([length])).logits
            out.append(int(logits.argmax()))
    return raw, out


def test_predictions_match_a_per_question_forward(trained, tmp_path):
    root, data, _ = trained
    ckpt = root / "results/teacher/best.pt"
    preds_file = tmp_path / "preds.json"
    result = validate.run(["--ckpt", str(ckpt), "--split", "test", "--write_preds", str(preds_file)])
    records = json.loads(preds_file.read_text())
    raw, expected = _independent_predictions(ckpt, data, "test")
    assert [r["question_id"] for r in records] == raw["question_id"].tolist()
    assert [r["prediction"] for r in records] == [ANSWERS[p] for p in expected]
    for record, q, length, answer in zip(records, raw["questions"], raw["questions_len"], raw["answers"]):
        assert record["question"] == " ".join(QUESTION_TOKENS[t] for t in q[:length])
        assert record["answer"] == ANSWERS[answer] and record["type"] == QUESTION_TOKENS[q[0]]
    correct = [p == a and a != 1 for p, a in zip(expected, raw["answers"])]
    assert [r["correct"] for r in records] == correct
    assert result["accuracy"]["all"] == pytest.approx(np.mean(correct))
    for qtype in TYPES:
        mask = [QUESTION_TOKENS[q[0]] == qtype for q in raw["questions"]]
        expected_acc = np.mean(np.array(correct)[mask]) if any(mask) else None
        assert result["accuracy"]["by_type"][qtype] == pytest.approx(expected_acc)
        assert result["accuracy"]["counts"][qtype] == sum(mask)


def test_unanswerable_questions_are_never_correct(trained, tmp_path):
    root, data, _ = trained
    preds_file = tmp_path / "p.json"
    validate.run(["--ckpt", str(root / "results/teacher/best.pt"), "--split", "val", "--write_preds", str(preds_file)])
    records = json.loads(preds_file.read_text())
    unknown = [r for r in records if r["answer"] == "<UNK1>"]
    assert unknown and not any(r["correct"] for r in unknown)


def pickle_answers(data, split):
    """Answers of the split's questions whose video has features (what the evaluator sees)."""
    import pickle
    with open(data.question_path(split), "rb") as f:
        raw = pickle.load(f)  # the test's own file
    return np.asarray(raw["answers"])[np.isin(raw["video_ids"], list(data.colour))]


def test_compare_layout_and_disagreements(trained, tmp_path):
    root, data, cfg = trained
    paths = [root / "results/teacher/best.pt", root / "results/student/best.pt"]
    out, json_out = tmp_path / "cmp.md", tmp_path / "cmp.json"
    validate.run(["--compare", *map(str, paths), "--names", "Teacher", "Student", "--cfg", str(cfg),
                  "--out", str(out), "--json", str(json_out), "--max_examples", "100",
                  "--plot", str(tmp_path / "c.png")])
    result = json.loads(json_out.read_text())
    assert (tmp_path / "c.png").stat().st_size > 0
    answers = pickle_answers(data, "test")
    import pickle
    with open(data.question_path("train"), "rb") as f:
        train_answers = np.asarray(pickle.load(f)["answers"])
    majority = np.bincount(train_answers[train_answers >= 2]).argmax()  # the training majority, never <UNK0/1>
    assert result["baseline"]["accuracy"] == pytest.approx(np.mean((answers == majority) & (answers != 1)))
    assert f"| majority answer ('{result['baseline']['answer']}') |" in result["markdown"]["table"]
    assert [m["name"] for m in result["models"]] == ["Teacher", "Student"]
    table = result["markdown"]["table"].splitlines()
    assert table[0] == "| Model | All | What | Who | How | When | Where | Parameters |"
    predictions = [_independent_predictions(p, data, "test")[1] for p in paths]
    disagree = sum(a != b for a, b in zip(*predictions))
    assert result["num_disagreements"] == disagree == len(result["disagreements"])
    for model, preds in zip(result["models"], predictions):
        teacher_row = next(line for line in table if line.startswith(f"| {model['name']} |"))
        assert f"{100 * model['accuracy']['all']:.2f}" in teacher_row and f"{model['parameters']:,}" in teacher_row
    for row in result["disagreements"]:
        assert row["predictions"]["Teacher"] != row["predictions"]["Student"]
        assert row["correct"]["Teacher"] == (row["predictions"]["Teacher"] == row["answer"] != "<UNK1>")
    assert "## Questions where the models disagree" in out.read_text()


def test_function_api_and_fingerprint_check(trained, tmp_path):
    root, data, _ = trained
    result = compare_checkpoints([root / "results/teacher/best.pt"], ["T"])
    assert result["models"][0]["accuracy"]["count"] == 16 and result["num_disagreements"] == 0
    other = write_tiny_dataset(tmp_path / "other", seed=4)
    vocab_path = other.data_dir / "tiny_vocab.json"
    vocab = json.loads(vocab_path.read_text())
    vocab["question_token_to_idx"]["painted"], vocab["question_token_to_idx"]["go"] = (
        vocab["question_token_to_idx"]["go"], vocab["question_token_to_idx"]["painted"])
    vocab_path.write_text(json.dumps(vocab))
    cfg = write_config(tmp_path / "other.yml", other, tmp_path / "results")
    with pytest.raises(CheckpointError, match="vocabulary fingerprint"):
        validate.run(["--ckpt", str(root / "results/teacher/best.pt"), "--cfg", str(cfg)])


def test_default_names_tell_checkpoints_of_one_run_apart():
    assert default_names(["r/my_teacher/best.pt", "r/my_teacher/last.pt", "r/student/best.pt"]) == \
        ["my_teacher/best", "my_teacher/last", "student"]
    assert default_names(["a/run/best.pt", "b/run/best.pt"]) == ["a/run/best", "b/run/best"]
    assert default_names(["r/teacher/best.pt", "r/student/best.pt"]) == ["teacher", "student"]


def test_compare_refuses_repeated_names():
    with pytest.raises(ValueError, match="--names must differ: T given more than once"):
        compare_checkpoints(["a.pt", "b.pt"], ["T", "T"])
