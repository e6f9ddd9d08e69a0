"""training/sweep_report.py on hand-made run outcomes (no training): seed statistics, paired tests against a
separate call of the permutation test, summary.json, the Table 3 markdown and the plot, for accuracy and MSE."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from training import sweep_report as R
from training.significance import paired_permutation_test
from training.sweep_plan import Plan, Run, SweepError


def _scores(folder, seed, outcome, metric="accuracy", by_type=None, groups=None, parameters=1000):
    outcome = np.asarray(outcome, dtype=np.float64)
    accuracy = {"metric": metric, "all": float(outcome.mean()), "by_type": by_type or {},
                "counts": {name: 1 for name in (by_type or {})}}
    if groups:
        accuracy["groups"] = groups
        accuracy["by_group"] = {g: 0.5 for g in groups}
    return R.RunScores(folder, seed, outcome, np.arange(len(outcome)), accuracy, parameters)


def test_keys_names_and_mean_std_by_hand():
    assert (R.score_key("MSE"), R.score_key("accuracy")) == ("mse", "accuracy")
    assert (R.outcome_name("MSE"), R.outcome_name("accuracy")) == ("squared error", "correctness")
    stats = R.mean_std([0.5, 0.7, 0.9])
    assert stats["mean"] == pytest.approx(0.7) and stats["std"] == pytest.approx(0.2)  # sample std (ddof 1)
    assert stats["values"] == [0.5, 0.7, 0.9] and all(type(v) is float for v in stats["values"])
    assert R.mean_std([0.4]) == {"mean": 0.4, "std": 0.0, "values": [0.4]}
    assert _scores("f", 0, [1, 0]).metric == "accuracy"
    assert R.RunScores("f", 0, np.zeros(1), np.zeros(1), {}, 1).metric == "accuracy"
    assert _scores("f", 0, [4.0], "MSE").metric == "MSE"


def test_model_summary_by_hand():
    runs = [_scores("s0", 0, [1, 1, 0, 0], by_type={"what": 0.5, "who": None}, groups={"g": ["what"]}, parameters=7),
            _scores("s1", 1, [1, 1, 1, 0], by_type={"what": 1.0, "who": 0.25}, groups={"g": ["what"]}, parameters=7)]
    entry = R.model_summary(runs, {"train.mode": "kd"})
    assert entry["seeds"] == [0, 1] and entry["runs"] == ["s0", "s1"]
    assert entry["accuracy"]["values"] == [0.5, 0.75] and entry["accuracy"]["mean"] == pytest.approx(0.625)
    assert entry["accuracy"]["std"] == pytest.approx(np.std([0.5, 0.75], ddof=1))
    assert entry["per_type"] == {"what": {"mean": 0.75, "std": pytest.approx(np.std([0.5, 1.0], ddof=1))}}
    assert entry["per_group"] == {"g": {"mean": 0.5, "std": 0.0}}
    assert entry["parameters"] == 7 and entry["settings"] == {"train.mode": "kd"}
    assert list(entry) == ["seeds", "runs", "accuracy", "per_type", "per_group", "parameters", "settings"]
    count = R.model_summary([_scores("c", 0, [4.0, 0.0], "MSE")], {})
    assert count["mse"] == {"mean": 2.0, "std": 0.0, "values": [2.0]} and "accuracy" not in count
    assert "per_group" not in count and count["per_type"] == {}


def _models():
    return {"Teacher": [_scores("t", 0, [1, 1, 1, 0, 1, 0, 1, 1])],
            "Student": [_scores("s0", 0, [1, 0, 1, 0, 0, 0, 1, 1]), _scores("s1", 1, [0, 0, 1, 0, 1, 0, 1, 0])],
            "Student-KD": [_scores("k0", 0, [1, 1, 1, 0, 1, 0, 1, 1]), _scores("k1", 1, [1, 1, 0, 1, 1, 0, 1, 1])]}


def test_paired_tests_equal_a_separate_call():
    by_model = _models()
    tests = R.paired_tests(by_model, [("Student-KD", "Student"), ("Student-KD", "Teacher")], rounds=500)
    for test in tests:
        expected = paired_permutation_test(np.stack([s.outcome for s in by_model[test["a"]]]),
                                           np.stack([s.outcome for s in by_model[test["b"]]]), rounds=500)
        assert test == {"a": test["a"], "b": test["b"], "mean_difference": expected.mean_difference,
                        "p_value": expected.p_value, "method": expected.method,
                        "differing_questions": expected.num_differing}
    assert [(t["a"], t["b"]) for t in tests] == [("Student-KD", "Student"), ("Student-KD", "Teacher")]
    assert tests[0]["mean_difference"] == pytest.approx((12 - 7) / 2 / 8)
    default = R.paired_tests(by_model, [("Student-KD", "Student")])[0]
    assert default["method"] == "exact, all 64 sign flips"  # 6 questions differ
    many = {"A": [_scores("a", 0, np.ones(40))], "B": [_scores("b", 0, np.zeros(40))]}
    assert R.paired_tests(many, [("A", "B")])[0]["method"] == "10,000 random sign flips (seed 0)"
    assert R.paired_tests(many, [("A", "B")], rounds=50)[0]["method"] == "50 random sign flips (seed 0)"


def test_paired_tests_refuse_other_questions_or_metrics():
    by_model = _models()
    moved = R.RunScores("x", 0, np.zeros(8), np.arange(1, 9), {"metric": "accuracy"}, 1)
    with pytest.raises(SweepError, match="^Student-KD and Student were scored on different test questions$"):
        R.paired_tests({**by_model, "Student": [moved]}, [("Student-KD", "Student")])
    with pytest.raises(SweepError, match="^Student-KD and Student were scored on different test questions$"):
        R.paired_tests({**by_model, "Student-KD": by_model["Student-KD"] + [moved]}, [("Student-KD", "Student")])
    mse = _scores("m", 0, np.zeros(8), "MSE")
    with pytest.raises(SweepError, match="^Student-KD and Student were scored with different metrics$"):
        R.paired_tests({**by_model, "Student": [mse]}, [("Student-KD", "Student")])


def test_summary_columns():
    acc = _scores("s", 0, [1, 0], by_type={"what": 1.0, "other": None}, groups={"g": ["what"]})
    acc.accuracy["counts"] = {"what": 2, "other": 0}
    assert R.summary_columns(acc) == (["what"], ["g"])
    acc.accuracy["counts"] = {"what": 1, "other": 1}
    assert R.summary_columns(acc) == (["what", "other"], ["g"])
    assert R.summary_columns(R.RunScores("f", 0, np.zeros(1), np.zeros(1), {}, 1)) == ([], [])


def _plan(tmp_path):
    run = Run("kd", "k0", "Student-KD", 0)
    return Plan(tmp_path, [0, 1], [], [run], None, [("Student-KD", "Student"), ("Student-KD", "Teacher")])


def test_summarize_by_hand(tmp_path):
    by_model = _models()
    summary = R.summarize(_plan(tmp_path), by_model, {"Student": {"train.mode": "student"}}, rounds=300)
    assert summary["metric"] == "accuracy" and summary["lower_is_better"] is False
    assert summary["columns"] == ["all"] and summary["categories"] == [] and summary["groups"] == []
    assert list(summary["models"]) == ["Teacher", "Student", "Student-KD"]
    assert summary["models"]["Student"]["settings"] == {"train.mode": "student"}
    assert summary["models"]["Teacher"]["settings"] == {}
    assert summary["tests"] == R.paired_tests(by_model, _plan(tmp_path).pairs, 300)
    assert summary["method"].startswith("two-sided paired sign-flip permutation test") and "300 seeded" in \
        summary["method"] and "correctness" in summary["method"]
    count = {"A": [_scores("a", 0, [4.0, 1.0], "MSE")], "B": [_scores("b", 0, [0.0, 1.0], "MSE")]}
    plan = Plan(tmp_path, [0], [], [], None, [("A", "B")])
    mse = R.summarize(plan, count, {})
    assert mse["metric"] == "MSE" and mse["lower_is_better"] is True and "squared error" in mse["method"]
    assert mse["models"]["A"]["mse"]["mean"] == 2.5 and "10,000 seeded" in mse["method"]


def test_tables_by_hand():
    models = {"Teacher": {"accuracy": {"mean": 0.5, "std": 0.0}, "per_type": {"what": {"mean": 0.25, "std": 0.0}},
                          "parameters": 2_163_193, "seeds": [0]},
              "Student": {"accuracy": {"mean": 0.6, "std": 0.05}, "per_type": {"who": {"mean": 1.0, "std": 0.1}},
                          "per_group": {"causal": {"mean": 0.5, "std": 0.125}}, "parameters": 1000, "seeds": [0, 1]}}
    assert R.infer_columns(models) == ["all", "what", "who", "causal"]
    assert R._metric_of(models) == "accuracy" and R._metric_of({"x": {"mse": {}}}) == "MSE"
    assert R.table3(models) == "\n".join([
        "| model | parameters | All | What | Who | Causal |", "|---|---:|---:|---:|---:|---:|",
        "| Teacher | 2,163,193 | 50.00 ± 0.00 | 25.00 ± 0.00 | - | - |",
        "| Student | 1,000 | 60.00 ± 5.00 | - | 100.00 ± 10.00 | 50.00 ± 12.50 |"])
    extra = [("majority ('x')", "", {"all": "8.00"})]
    assert R.table3(models, extra, columns=["all", "what"]).splitlines()[2:4] == [
        "| majority ('x') |  | 8.00 | - |", "| Teacher | 2,163,193 | 50.00 ± 0.00 | 25.00 ± 0.00 |"]
    mse = {"M": {"mse": {"mean": 1.5, "std": 0.25}, "per_type": {}, "parameters": 5, "seeds": [3]}}
    assert R.table3(mse).splitlines()[2] == "| M | 5 | 1.500 ± 0.250 |"
    assert R.table3(mse, metric="MSE", columns=["all", "x"]).splitlines()[2] == "| M | 5 | 1.500 ± 0.250 | - |"
    tests = [{"a": "A", "b": "B", "mean_difference": -0.0125, "p_value": 0.41234}]
    assert R.tests_table(tests) == "\n".join(["| a | b | mean difference (points) | p-value |", "|---|---|---:|---:|",
                                              "| A | B | -1.25 | 0.4123 |"])
    assert R.tests_table(tests, "MSE") == "\n".join(["| a | b | mean difference (MSE) | p-value |",
                                                     "|---|---|---:|---:|", "| A | B | -0.013 | 0.4123 |"])
    assert R.seeds_line({**models, **mse}) == "Seeds: Teacher 0; Student 0, 1; M 3"


def test_markdown_and_report_files(tmp_path):
    by_model = _models()
    summary = R.summarize(_plan(tmp_path), by_model, {}, rounds=200)
    text = R.markdown(summary, "Sweep")
    parts = text.split("\n\n")
    assert parts[0] == "# Sweep" and parts[1] == "Test accuracy (%), mean ± sample std over seeds:"
    assert parts[2] == R.table3(summary["models"], columns=summary["columns"], metric="accuracy")
    assert parts[3] == R.seeds_line(summary["models"]) and parts[4] == "Paired tests (a minus b):"
    assert parts[5] == R.tests_table(summary["tests"]) and parts[6] == f"Method: {summary['method']}.\n"
    count = {"M": {"mse": {"mean": 1.5, "std": 0.25, "values": [1.25, 1.75]}, "per_type": {}, "parameters": 5,
                   "seeds": [0, 1]}}
    tests = [{"a": "M", "b": "M", "mean_difference": 0.5, "p_value": 1.0}]
    mse_text = R.markdown({"metric": "MSE", "models": count, "tests": tests, "method": "m", "columns": ["all", "x"]},
                          "C")
    assert mse_text.split("\n\n") == [
        "# C", "Test MSE of the rounded count (lower is better), mean ± sample std over seeds:",
        "| model | parameters | All | X |\n|---|---:|---:|---:|\n| M | 5 | 1.500 ± 0.250 | - |", "Seeds: M 0, 1",
        "Paired tests (a minus b):", R.tests_table(tests, "MSE"), "Method: m.\n"]
    plain = R.markdown({"models": {"A": {"accuracy": {"mean": 0.5, "std": 0.0}, "per_type": {}, "parameters": 1,
                                         "seeds": [0]}}, "tests": [], "method": "m"}, "T")
    assert "Test accuracy (%), mean ± sample std over seeds:" in plain and "| A | 1 | 50.00 ± 0.00 |" in plain
    R.write_reports(summary, tmp_path, "Sweep")
    assert (tmp_path / "summary.json").read_text() == json.dumps(summary, indent=1) + "\n"
    assert (tmp_path / "summary.md").read_text() == text
    assert (tmp_path / "summary.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_shows_every_seed_and_the_mean(tmp_path, monkeypatch):
    from training import plots
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or Path(path))
    summary = {"metric": "accuracy", "models": {
        "A": {"accuracy": {"mean": 0.5, "std": 0.1, "values": [0.4, 0.6]}},
        "B": {"accuracy": {"mean": 0.3, "std": 0.0, "values": [0.3]}}}}
    assert R.plot_summary(summary, tmp_path / "s.png") == tmp_path / "s.png"
    ax = figures[0].axes[0]
    from matplotlib.collections import PathCollection
    dots = [c.get_offsets().tolist() for c in ax.collections if type(c) is PathCollection]
    assert [p[0] for p in dots[0]] == [40.0, 60.0] and [p[0] for p in dots[-1]] == [30.0]
    labels = [t.get_text() for t in ax.texts]
    assert labels == ["50.00 ± 10.00", "30.00 ± 0.00"]
    assert [t.xy for t in ax.texts] == [(60.0, 0), (30.0, 1)] and ax.texts[0].xyann == (8, 0)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"]
    assert ax.get_xlabel() == "test accuracy (%)" and ax.get_title().startswith("Test accuracy per model")
    count = {"metric": "MSE", "models": {"C": {"mse": {"mean": 1.5, "std": 0.25, "values": [1.25, 1.75]}}}}
    R.plot_summary(count, tmp_path / "c.png")
    ax = figures[1].axes[0]
    assert [t.get_text() for t in ax.texts] == ["1.500 ± 0.250"] and ax.get_xlabel() == "test MSE (lower is better)"
    assert ax.get_title() == "Test MSE per model: seeds (dots), mean ± std (bar)"
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # first model on top
    R.plot_summary({"models": summary["models"]}, tmp_path / "d.png")  # no "metric": accuracy
    assert figures[2].axes[0].get_xlabel() == "test accuracy (%)"


class _FakeEvaluator:
    """What run_scores needs of training.evaluation.SplitEvaluator, on 4 questions (ids 10-13, answers 1 2 3 4)."""
    split = "test"

    class Questions:
        question_ids, answers = np.array([10, 11, 12, 13]), np.array([1, 2, 3, 4])

        def __len__(self):
            return 4

    def __init__(self, head, predictions):
        self.head, self.predictions, self.calls = head, np.asarray(predictions), []
        self.questions = self.Questions()

    def evaluate(self, ckpt):
        from types import SimpleNamespace

        import torch
        from training.metrics import metric_for, score_by_category
        self.calls.append(ckpt)
        accuracy = score_by_category(torch.from_numpy(self.predictions), torch.from_numpy(self.questions.answers),
                                     torch.tensor([0, 1, 0, 1]), ("what", "who"), metric=metric_for(self.head),
                                     unanswerable=None)
        return SimpleNamespace(predictions=self.predictions, accuracy=accuracy, parameters=42)

    def answer_texts(self):
        return lambda i, a: f"q{i}:{a}"

    def category_name(self, i):
        return ("what", "who")[i % 2]

    def correct(self, predictions):
        return predictions == self.questions.answers


@pytest.mark.parametrize("head", ["open_ended", "multiple_choice", "count"])
def test_run_scores_evaluate_once_and_read_the_cache(tmp_path, head):
    ckpt, cache = tmp_path / "best.pt", tmp_path / "run" / R.PREDICTIONS_FILE
    ckpt.write_bytes(b"weights")
    cache.parent.mkdir()
    evaluator = _FakeEvaluator(head, [1, 0, 3, 6])
    scores = R.run_scores("run", 2, ckpt, cache, lambda: evaluator)
    assert evaluator.calls == [ckpt] and (scores.folder, scores.seed, scores.parameters) == ("run", 2, 42)
    assert scores.question_ids.tolist() == [10, 11, 12, 13] and scores.question_ids.dtype == np.int64
    cached = json.loads(cache.read_text())
    assert (cached["format"], cached["split"], cached["head"], cached["parameters"]) == (R.CACHE_FORMAT, "test",
                                                                                         head, 42)
    questions = cached["questions"]
    assert questions["question_id"] == [10, 11, 12, 13] and questions["type"] == ["what", "who", "what", "who"]
    assert questions["answer"] == ["q0:1", "q1:2", "q2:3", "q3:4"]
    assert questions["prediction"] == ["q0:1", "q1:0", "q2:3", "q3:6"]
    if head == "count":
        assert cached["metric"] == "MSE" and questions["squared_error"] == [0, 4, 0, 4] and "correct" not in questions
        assert scores.outcome.tolist() == [0.0, 4.0, 0.0, 4.0] and scores.metric == "MSE"
        assert cached["accuracy"]["all"] == 2.0
        assert all(type(x) is int for x in questions["squared_error"])  # integers in the file, not 4.0
    else:
        assert cached["metric"] == "accuracy" and questions["correct"] == [1, 0, 1, 0]
        assert all(type(x) is int for x in questions["correct"])
        assert scores.outcome.tolist() == [1.0, 0.0, 1.0, 0.0] and scores.outcome.dtype == np.float64
        assert cached["accuracy"] == scores.accuracy and scores.accuracy["all"] == 0.5
    if head == "multiple_choice":
        assert questions["answer_index"] == [1, 2, 3, 4] and questions["prediction_index"] == [1, 0, 3, 6]
    else:
        assert "answer_index" not in questions and "prediction_index" not in questions
    again = R.run_scores("run", 2, ckpt, cache, lambda: pytest.fail("the cache must be read"))
    assert again.outcome.tolist() == scores.outcome.tolist() and again.accuracy == scores.accuracy
    cache.write_text("{not json")
    R.run_scores("run", 2, ckpt, cache, lambda: evaluator)  # unreadable: evaluated again
    assert len(evaluator.calls) == 2


def test_collect_scores_by_model_and_a_given_teacher(tmp_path):
    runs = [Run("student", "s0", "Student", 0), Run("student", "s1", "Student", 1), Run("kd", "k0", "Student-KD", 0)]
    for run in runs:
        (tmp_path / run.folder).mkdir()
        (tmp_path / run.folder / "best.pt").write_bytes(run.folder.encode())
    teacher = tmp_path / "given.pt"
    teacher.write_bytes(b"teacher")
    made = []
    evaluator = _FakeEvaluator("open_ended", [1, 2, 0, 0])
    plan = Plan(tmp_path, [0, 1], [], runs, teacher, [])
    by_model = R.collect_scores(plan, lambda: made.append(1) or evaluator)
    assert list(by_model) == ["Student", "Student-KD", "Teacher"]
    assert [s.folder for s in by_model["Student"]] == ["s0", "s1"] and [s.seed for s in by_model["Student"]] == [0, 1]
    assert by_model["Teacher"][0].folder == str(teacher) and by_model["Teacher"][0].seed == -1
    assert evaluator.calls == [tmp_path / "s0/best.pt", tmp_path / "s1/best.pt", tmp_path / "k0/best.pt", teacher]
    assert (tmp_path / "given_teacher" / R.PREDICTIONS_FILE).is_file()
    assert "Teacher" not in R.collect_scores(Plan(tmp_path, [0], [], runs[:1], None, []), lambda: evaluator)


def test_file_sha256_is_the_sha256_of_the_whole_file(tmp_path):
    small = tmp_path / "abc"
    small.write_bytes(b"abc")
    # the FIPS 180-2 test vector of "abc"
    assert R.file_sha256(small) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    big = tmp_path / "big"
    data = bytes(range(256)) * (3 * 4096 + 1)  # 3 MiB + 256 bytes: several of the 1 MiB blocks it reads
    big.write_bytes(data)
    assert R.file_sha256(big) == hashlib.sha256(data).hexdigest()  # hashlib on the bytes at once, not by blocks


def test_evaluation_key_hashes_the_test_file_and_the_resolved_config(tmp_path):
    from easydict import EasyDict
    (tmp_path / "q.pt").write_bytes(b"abc")
    cfg = EasyDict({"train": {"out": Path("runs"), "lr": 0.5},
                    "dataset": {"test_question_pt": "q.pt", "data_dir": str(tmp_path)}})
    text = ('{"dataset": {"data_dir": "%s", "test_question_pt": "q.pt"}, "train": {"lr": 0.5, "out": "runs"}}'
            % tmp_path)  # sorted keys, the Path written as its text
    assert R.evaluation_key(cfg) == {
        "test_file_sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "config_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    cfg.dataset.test_question_pt = "missing.pt"
    assert R.evaluation_key(cfg)["test_file_sha256"] is None


def test_checkpoint_stamp_fields(tmp_path):
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"abc")
    assert R._checkpoint_stamp(ckpt, {"config_sha256": "c"}) == {
        "checkpoint": str(ckpt), "checkpoint_sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "config_sha256": "c"}


_STAMP = {"checkpoint": "/a/best.pt", "checkpoint_sha256": "s" * 64, "test_file_sha256": "t" * 64,
          "config_sha256": "c" * 64}
_VALID = {**_STAMP, "format": R.CACHE_FORMAT, "metric": "accuracy", "head": "open_ended", "parameters": 1,
          "accuracy": {"all": 0.5}, "questions": {"question_id": [1, 2], "correct": [1, 0]}}


@pytest.mark.parametrize("change, read", [
    ({}, True), ({"checkpoint": "/b/best.pt"}, True),  # a moved sweep folder keeps its caches
    ({"config_sha256": "d" * 64}, False), ({"checkpoint_sha256": "r" * 64}, False), ({"format": -1}, False),
    ({"questions": {"question_id": [1, 2], "correct": [1]}}, False),  # ragged
    ({"questions": {"question_id": [1], "correct": [True]}}, False),  # a bool is no outcome
    ({"questions": {"question_id": [1], "correct": "1"}}, False),
    ({"accuracy": {"all": "0.5"}}, False)])
def test_read_cache_accepts_only_a_cache_of_the_same_stamp_and_shape(tmp_path, change, read):
    cache = tmp_path / "c.json"
    cache.write_text(json.dumps({**_VALID, **change}))
    assert (R._read_cache(cache, _STAMP) is not None) == read
    cache.write_text("null")
    assert R._read_cache(cache, _STAMP) is None


def test_run_scores_and_collect_scores_key_the_caches(tmp_path):
    ckpt, cache = tmp_path / "best.pt", tmp_path / R.PREDICTIONS_FILE
    ckpt.write_bytes(b"weights")
    evaluator = _FakeEvaluator("open_ended", [1, 0, 3, 6])
    R.run_scores("run", 0, ckpt, cache, lambda: evaluator, {"config_sha256": "c"})
    assert json.loads(cache.read_text())["config_sha256"] == "c"
    R.run_scores("run", 0, ckpt, cache, lambda: evaluator, {"config_sha256": "c"})
    assert len(evaluator.calls) == 1
    R.run_scores("run", 0, ckpt, cache, lambda: evaluator, {"config_sha256": "d"})  # other config: evaluated again
    assert len(evaluator.calls) == 2
    run = Run("student", "s0", "Student", 0)
    (tmp_path / "s0").mkdir()
    (tmp_path / "s0" / "best.pt").write_bytes(b"s0")
    R.collect_scores(Plan(tmp_path, [0], [], [run], ckpt, []), lambda: evaluator, {"config_sha256": "e"})
    for written in (tmp_path / "s0" / R.PREDICTIONS_FILE, tmp_path / "given_teacher" / R.PREDICTIONS_FILE):
        assert json.loads(written.read_text())["config_sha256"] == "e"
