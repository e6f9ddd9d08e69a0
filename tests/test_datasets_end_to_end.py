"""Every new dataset end to end with its own configs: the synthetic official layout -> question files
(preprocess_questions' command line, tiny GloVe) -> appearance and motion features (preprocess_features' command
line, random-init backbones on 32x32 frames, 2 clips of 4 frames) -> a teacher (configs/<name>_teacher.yml, one
epoch, tiny model) -> a student distilled from it (configs/<name>_student.yml) -> validate.py --compare. The
configs name no files: the dataset's default file names must be the ones the preprocessing wrote. The sweep
report (per-question cache, summary table, paired test) is built from the same two checkpoints."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import train
import validate
from layout_fixtures import DIM, write_glove
from preprocess.datasets import get_dataset
from preprocess.preprocess_features import main as extract_main
from preprocess.preprocess_questions import main as questions_main
from preprocess.synthetic import write_synthetic
from training import sweep_report
from training.evaluation import SplitEvaluator
from training.metrics import format_value
from training.run_schema import load_config
from utils.safe_pickle import load_pickle

pytestmark = pytest.mark.usefixtures("single_thread")

# case id -> (dataset, task, config name stem, file prefix)
CASES = {
    "svqa": ("svqa", None, "svqa", "svqa"),
    "tgif-qa-action": ("tgif-qa", "action", "tgif_qa_action", "tgif-qa_action"),
    "tgif-qa-transition": ("tgif-qa", "transition", "tgif_qa_transition", "tgif-qa_transition"),
    "tgif-qa-count": ("tgif-qa", "count", "tgif_qa_count", "tgif-qa_count"),
    "tgif-qa-frameqa": ("tgif-qa", "frameqa", "tgif_qa_frameqa", "tgif-qa_frameqa"),
    "nextqa": ("nextqa", None, "nextqa", "nextqa"),
}
TINY_MODEL = ["model.module_dim=32", f"model.word_dim={DIM}", "model.num_heads=4", "model.mfb_factor=2",
              "model.mfb_dim=16", "train.batch_size=16", "train.max_epochs=1", "dataset.num_workers=0", "device=cpu",
              "eval.test_every_epoch=true"]
EXTRACT = ["--random_init", "--no_bn_recalibration", "--num_clips", "2", "--num_frames", "4", "--image_height", "32",
           "--image_width", "32", "--device", "cpu", "--num_workers", "0"]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """Each dataset's synthetic layout (TGIF-QA: all four tasks, shared by them) and a tiny GloVe, written once."""
    root = tmp_path_factory.mktemp("layouts")
    write_glove(root / "glove.pkl")
    written = {}

    def get(dataset: str) -> Path:
        if dataset not in written:
            write_synthetic(dataset, root / dataset, num_videos=8)
            written[dataset] = root / dataset
        return written[dataset]

    return root / "glove.pkl", get


def prepare(dataset, task, prefix, raw: Path, glove: Path, data: Path) -> None:
    """Question files and features of ``raw`` under ``data``, by the command lines."""
    task_args = ["--question_type", task] if task else []
    assert questions_main(["--dataset", dataset, *task_args, "--dataset_dir", str(raw), "--glove_pt", str(glove),
                           "--output_dir", str(data)]) in (None, 0)
    for model, kind in (("resnet101", "appearance"), ("resnext101", "motion")):
        assert extract_main(["--dataset", dataset, *task_args, "--dataset_dir", str(raw), "--model", model,
                             "--out", str(data / f"{prefix}_{kind}_feat.h5"), *EXTRACT]) == 0


def check_columns(spec, accuracy: dict, test: dict) -> None:
    """Per-category columns of one model's test result against the question file."""
    n = len(test["answers"])
    if not spec.category_names:
        assert accuracy["by_type"] == {} and accuracy.get("by_group", {}) == {}
        return
    counts = np.bincount(test["question_category"], minlength=len(spec.category_names))
    present = {name: int(c) for name, c in zip(spec.category_names, counts) if c}
    assert {name: accuracy["counts"][name] for name in present} == present
    assert set(present) <= set(accuracy["by_type"]) <= set(spec.category_names)
    assert sum(accuracy["counts"].values()) == n
    for name in present:
        assert accuracy["by_type"][name] == pytest.approx(accuracy["correct_by_type"][name] / present[name])
    for group, members in spec.category_groups.items():
        asked = sum(present.get(m, 0) for m in members)
        if asked:
            right = sum(accuracy["correct_by_type"].get(m, 0) for m in members)
            assert accuracy["by_group"][group] == pytest.approx(right / asked), group


@pytest.mark.parametrize("case", list(CASES))
def test_dataset_end_to_end(case, layouts, tmp_path):
    dataset, task, stem, prefix = CASES[case]
    spec = get_dataset(dataset, task)
    glove, layout = layouts
    data, results = tmp_path / "data", tmp_path / "results"
    prepare(dataset, task, prefix, layout(dataset), glove, data)
    paths = [f"dataset.data_dir={data}", f"dataset.save_dir={results}"]

    assert train.main(["--cfg", f"configs/{stem}_teacher.yml", *paths, *TINY_MODEL]) == 0
    teacher = results / f"{stem}_teacher" / "best.pt"
    assert torch.load(teacher, weights_only=True)["model_config"]["head"] == spec.answer_type
    assert train.main(["--cfg", f"configs/{stem}_student.yml", f"distill.teacher_ckpt={teacher}", *paths,
                       *TINY_MODEL]) == 0
    student_dir = results / f"{stem}_student_kd"
    history = json.loads((student_dir / "metrics.json").read_text())
    assert history[0]["train_kd_appearance"] > 0 and history[0]["train_kd_motion"] > 0

    out = tmp_path / "compare.json"
    assert validate.main(["--compare", str(teacher), str(student_dir / "best.pt"), "--names", "Teacher", "Student",
                          "--json", str(out), "--out", str(tmp_path / "table.md")]) == 0
    compared = json.loads(out.read_text())
    test = load_pickle(data / f"{prefix}_test_questions.pt")
    n = len(test["answers"])
    lines = (tmp_path / "table.md").read_text().splitlines()
    breakdown = "per category" if spec.name in ("svqa", "nextqa") or spec.task == "frameqa" else "overall"
    assert lines[0] == f"## test {'MSE' if spec.answer_type == 'count' else 'accuracy (%)'} {breakdown}"
    header = next(line for line in lines if line.startswith("| Model |"))
    metric = "MSE" if spec.answer_type == "count" else "accuracy"
    assert compared["metric"] == metric and [m["name"] for m in compared["models"]] == ["Teacher", "Student"]
    assert [m["graph_layers"] for m in compared["models"]] == [4, 1]
    for model in compared["models"]:
        accuracy = model["accuracy"]
        assert accuracy["metric"] == metric and accuracy["count"] == n
        assert model["scoring"]["questions_in_file"] == model["scoring"]["questions_scored"] == n
        check_columns(spec, accuracy, test)
    columns = [c.lower() for c in spec.category_names if c in compared["models"][0]["accuracy"]["by_type"]]
    columns += [g.lower() for g in spec.category_groups]
    cells = [c.strip() for c in header.split("|")[1:-1]]
    assert cells[-2:] == ["Parameters", "test-selected (optimistic)"]
    assert [c.lower() for c in cells[1:-2]] == ["all", *columns]
    selected = [m["test_selected"] for m in compared["models"]]
    assert all(s["epoch"] == 1 and s.get("metric", "accuracy") == metric for s in selected)
    unit = " MSE" if metric == "MSE" else "%"
    for name in (f"{stem}_teacher", f"{stem}_student_kd"):
        log = (results / name / "train.log").read_text()
        assert f"optimistic): {format_value(selected[0 if 'teacher' in name else 1]['accuracy'], metric)}{unit} " \
               "at epoch 1" in log

    check_sweep_report(spec, [f"configs/{stem}_student.yml", paths + TINY_MODEL],
                       {"Teacher": teacher, "Student-KD": student_dir / "best.pt"}, test, tmp_path)

    preds = tmp_path / "preds.json"
    assert validate.main(["--ckpt", str(student_dir / "best.pt"), "--write_preds", str(preds)]) == 0
    records = json.loads(preds.read_text())
    student = compared["models"][1]["accuracy"]
    assert len(records) == n
    if spec.answer_type == "count":
        assert all(1 <= int(r["prediction"]) <= 10 for r in records)
        assert student["all"] == pytest.approx(np.mean([r["squared_error"] for r in records]))
        assert [int(r["answer"]) for r in records] == test["answers"].tolist()
    else:
        assert student["correct"] == sum(r["correct"] for r in records)


def check_sweep_report(spec, config_args: list, checkpoints: dict, test: dict, tmp_path: Path) -> None:
    """sweep.py's report of the checkpoints {name: best.pt}: per-question caches in the dataset's terms and a
    summary table with the dataset's columns and metric."""
    evaluator = SplitEvaluator(load_config(*config_args), "test")
    try:
        scores = {name: [sweep_report.run_scores(name, 0, ckpt, tmp_path / f"{name}.json", lambda: evaluator)]
                  for name, ckpt in checkpoints.items()}
    finally:
        evaluator.close()
    n = len(test["answers"])
    for name in checkpoints:
        cached = json.loads((tmp_path / f"{name}.json").read_text())
        questions, accuracy = cached["questions"], cached["accuracy"]
        outcome = questions["squared_error" if spec.answer_type == "count" else "correct"]
        assert len(outcome) == n and questions["question_id"] == scores[name][0].question_ids.tolist()
        names = spec.category_names
        assert questions["type"] == ([names[t] for t in test["question_category"]] if names else [None] * n)
        if spec.answer_type == "count":
            assert questions["answer"] == [str(a) for a in test["answers"]]
            assert sum(outcome) == accuracy["squared_error"]
        else:
            assert sum(outcome) == accuracy["correct"]
        if spec.answer_type == "multiple_choice":
            assert questions["answer_index"] == test["answers"].tolist()
        assert scores[name][0].outcome.tolist() == outcome
    pairs = [tuple(checkpoints)]
    summary = sweep_report.summarize(type("Plan", (), {"pairs": pairs})(), scores, {}, rounds=10)
    text = sweep_report.markdown(summary, "sweep")
    header = next(line for line in text.splitlines() if line.startswith("| model |"))
    columns = [c.strip() for c in header.split("|")[3:-1]]
    expected = list(spec.category_names) + list(spec.category_groups)
    assert [c.lower() for c in columns] == ["all"] + [c.lower() for c in expected]
    metric = "MSE" if spec.answer_type == "count" else "accuracy"
    assert summary["metric"] == metric and ("Test MSE of the rounded count (lower is better)" in text) == (metric == "MSE")
    for name, entry in summary["models"].items():
        assert entry[sweep_report.score_key(metric)]["mean"] == pytest.approx(scores[name][0].accuracy["all"])
