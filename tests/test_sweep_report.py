"""training/sweep_report.py on hand-made run outcomes (no training): seed statistics, paired tests against a
separate call of the permutation test, summary.json, the Table 3 markdown and the plot, for accuracy and MSE."""
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
    extra = [("majority ('x')", "", {"all": "8.00", "what": "1.00"})]
    assert R.table3(models, extra, columns=["all", "what"]).splitlines()[2:4] == [
        "| majority ('x') |  | 8.00 | 1.00 |", "| Teacher | 2,163,193 | 50.00 ± 0.00 | 25.00 ± 0.00 |"]
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
    mse_text = R.markdown({"metric": "MSE", "models": count, "tests": [], "method": "m"}, "C")
    assert "Test MSE of the rounded count (lower is better), mean ± sample std over seeds:" in mse_text
    assert "| M | 5 | 1.500 ± 0.250 |" in mse_text
    R.write_reports(summary, tmp_path, "Sweep")
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))
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
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"]
    assert ax.get_xlabel() == "test accuracy (%)" and ax.get_title().startswith("Test accuracy per model")
    count = {"metric": "MSE", "models": {"C": {"mse": {"mean": 1.5, "std": 0.25, "values": [1.25, 1.75]}}}}
    R.plot_summary(count, tmp_path / "c.png")
    ax = figures[1].axes[0]
    assert [t.get_text() for t in ax.texts] == ["1.500 ± 0.250"] and ax.get_xlabel() == "test MSE (lower is better)"
