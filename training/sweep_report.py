"""A sweep's results: per-question test predictions of every run (cached), mean ± std over seeds, paired tests,
and the report files summary.json / summary.md / summary.png.

Each finished run's best.pt is evaluated once on the test split; the per-question outcome goes to
``<run folder>/test_predictions.json`` (recomputed only when best.pt changes):
    {"checkpoint", "checkpoint_mtime_ns", "checkpoint_size", "split": "test", "parameters",
     "accuracy": {"metric", "all", "count", "correct", "by_type", "counts", "correct_by_type"[, "by_group"]},
     "questions": {"question_id": [...], "type": [...], "answer": [...], "prediction": [...], "correct": [...]
                   [, "squared_error": [...]]}}
Types are the dataset's categories (null when it has none), answers and predictions as text (the candidate's text
for multiple choice, the count for count). The metric is accuracy, or MSE for count datasets: then the tables
show MSE (lower is better) and the paired tests compare per-question squared errors.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.metrics import MSE, TYPE_NAMES
from training.significance import DEFAULT_ROUNDS, describe_method, paired_permutation_test
from training.sweep_plan import DISPLAY, TEACHER, Plan, SweepError
from training.reporting import write_text_atomic

PREDICTIONS_FILE = "test_predictions.json"
COLUMNS = ("all", "what", "who", "how", "when", "where")  # the paper's Table 3 columns, 'All' first


@dataclass
class RunScores:
    """One run's test outcome: ``correct`` (N,) per-question score (0/1 correct; count datasets: the squared
    error), ``question_ids`` (N,), its accuracy dict (its "metric": accuracy or MSE)."""
    folder: str
    seed: int
    correct: np.ndarray
    question_ids: np.ndarray
    accuracy: dict
    parameters: int


def _checkpoint_stamp(ckpt: Path) -> dict:
    stat = ckpt.stat()
    return {"checkpoint": str(ckpt), "checkpoint_mtime_ns": stat.st_mtime_ns, "checkpoint_size": stat.st_size}


def _read_cache(path: Path, stamp: dict) -> dict | None:
    """The cached predictions when they belong to this checkpoint file (same modification time and size; the path
    may differ, so a moved sweep folder keeps its caches), else None."""
    if not path.is_file():
        return None
    try:
        cached = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    same = all(cached.get(k) == stamp[k] for k in ("checkpoint_mtime_ns", "checkpoint_size"))
    return cached if same else None


def _evaluate(evaluator, ckpt: Path, stamp: dict) -> dict:
    """Per-question predictions of ``ckpt`` on the evaluator's split, in the cache's layout."""
    result = evaluator.evaluate(ckpt)
    q, text = evaluator.questions, evaluator.answer_texts()
    correct = evaluator.correct(result.predictions)
    questions = {"question_id": q.question_ids.tolist(),
                 "type": [evaluator.category_name(i) for i in range(len(q.answers))],
                 "answer": [text(i, a) for i, a in enumerate(q.answers)],
                 "prediction": [text(i, p) for i, p in enumerate(result.predictions)],
                 "correct": correct.astype(int).tolist()}
    if result.accuracy.metric == MSE:
        error = (np.asarray(result.predictions, dtype=np.int64) - np.asarray(q.answers, dtype=np.int64)) ** 2
        questions["squared_error"] = error.tolist()
    return {**stamp, "split": evaluator.split, "parameters": result.parameters, "accuracy": result.accuracy.to_dict(),
            "questions": questions}


def run_scores(folder: str, seed: int, ckpt: Path, cache: Path, get_evaluator) -> RunScores:
    """The run's test outcome from ``cache``, evaluating ``ckpt`` (and writing the cache) when it is missing or
    stale. ``get_evaluator()`` returns a training.evaluation.SplitEvaluator on the test split (made once, lazily)."""
    stamp = _checkpoint_stamp(ckpt)
    cached = _read_cache(cache, stamp)
    if cached is None:
        cached = _evaluate(get_evaluator(), ckpt, stamp)
        write_text_atomic(cache, json.dumps(cached))
    questions = cached["questions"]
    score = questions["squared_error"] if cached["accuracy"].get("metric") == MSE else questions["correct"]
    return RunScores(folder, seed, np.array(score, dtype=np.int64),
                     np.array(questions["question_id"], dtype=np.int64), cached["accuracy"], cached["parameters"])


def collect_scores(plan: Plan, get_evaluator) -> dict[str, list[RunScores]]:
    """Model name -> the scores of its runs (in seed order), for every run of the plan plus a given teacher."""
    by_model: dict[str, list[RunScores]] = {}
    for run in plan.runs:
        run_dir = plan.out / run.folder
        by_model.setdefault(run.model, []).append(
            run_scores(run.folder, run.seed, run_dir / "best.pt", run_dir / PREDICTIONS_FILE, get_evaluator))
    if plan.teacher_ckpt is not None:
        by_model[DISPLAY[TEACHER]] = [run_scores(str(plan.teacher_ckpt), -1, plan.teacher_ckpt,
                                                     plan.out / "given_teacher" / PREDICTIONS_FILE, get_evaluator)]
    return by_model


def mean_std(values: list[float]) -> dict:
    """{"mean", "std", "values"}; std is the sample standard deviation (ddof=1), 0 for a single value."""
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
            "values": [float(v) for v in array]}


def model_summary(scores: list[RunScores], settings: dict) -> dict:
    """One model's entry of summary.json from its runs."""
    per_type = {}
    for section in ("by_type", "by_group"):  # categories, then their groups (NExT-QA: causal, temporal, ...)
        for name in scores[0].accuracy.get(section, {}):
            values = [s.accuracy[section][name] for s in scores]
            if all(v is not None for v in values):
                per_type[name] = {k: v for k, v in mean_std(values).items() if k != "values"}
    return {"seeds": [s.seed for s in scores], "runs": [s.folder for s in scores],
            "metric": scores[0].accuracy.get("metric", "accuracy"),
            "accuracy": mean_std([s.accuracy["all"] for s in scores]), "per_type": per_type,
            "parameters": scores[0].parameters, "settings": settings}


def paired_tests(by_model: dict[str, list[RunScores]], pairs: list[tuple[str, str]],
                 rounds: int = DEFAULT_ROUNDS) -> list[dict]:
    """summary.json's "tests": a paired permutation test per (a, b) pair, on the same test questions."""
    tests = []
    for a, b in pairs:
        ids = by_model[a][0].question_ids
        if any(not np.array_equal(s.question_ids, ids) for s in by_model[a] + by_model[b]):
            raise SweepError(f"{a} and {b} were scored on different test questions")
        result = paired_permutation_test(np.stack([s.correct for s in by_model[a]]),
                                         np.stack([s.correct for s in by_model[b]]), rounds=rounds)
        tests.append({"a": a, "b": b, "mean_difference": result.mean_difference, "p_value": result.p_value,
                      "method": result.method, "differing_questions": result.num_differing})
    return tests


def summarize(plan: Plan, by_model: dict[str, list[RunScores]], settings: dict[str, dict],
              rounds: int = DEFAULT_ROUNDS) -> dict:
    """The summary.json document: {"models": {name: entry}, "tests": [...], "method": one line}."""
    models = {name: model_summary(scores, settings.get(name, {})) for name, scores in by_model.items()}
    metric = next(iter(models.values()))["metric"] if models else "accuracy"
    return {"metric": metric, "models": models, "tests": paired_tests(by_model, plan.pairs, rounds), "method": describe_method(rounds)}


# ---------------------------------------------------------------------------------------------- report files
def _scale(metric: str) -> float:
    """Accuracies are shown in %, MSE as it is."""
    return 1.0 if metric == MSE else 100.0


def _cell(stats: dict | None, scale: float = 100.0) -> str:
    return "-" if stats is None else f"{scale * stats['mean']:.2f} ± {scale * stats['std']:.2f}"


def _columns(models: dict[str, dict]) -> tuple[str, ...]:
    """'all' and then the per-category columns: the paper's What..Where for first-word question types (MSVD-QA,
    MSRVTT-QA), else the dataset's categories and groups in their order (none: 'all' only)."""
    names = list(dict.fromkeys(name for entry in models.values() for name in entry["per_type"]))
    if names and set(names) <= set(TYPE_NAMES):
        return COLUMNS
    return ("all", *names)  # no categories (TGIF-QA action, transition, count): All only


def table3(models: dict[str, dict], extra_rows: list[tuple[str, str, dict]] = ()) -> str:
    """The paper's Table 3 layout (model | parameters | All | What | Who | How | When | Where; other datasets:
    All and their categories), mean ± std in % (count datasets: MSE).

    ``extra_rows``: (name, parameters text, {column: text}) rows put first, e.g. baselines.
    """
    columns = _columns(models)
    scale = _scale(next(iter(models.values()))["metric"]) if models else 100.0
    lines = ["| model | parameters | " + " | ".join(c if c.isupper() else c.capitalize() for c in columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    for name, params, cells in extra_rows:
        lines.append(f"| {name} | {params} | " + " | ".join(cells.get(c, "-") for c in columns) + " |")
    for name, entry in models.items():
        cells = [_cell(entry["accuracy"], scale)] + [_cell(entry["per_type"].get(c), scale) for c in columns[1:]]
        lines.append(f"| {name} | {entry['parameters']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tests_table(tests: list[dict], metric: str = "accuracy") -> str:
    unit = "MSE" if metric == MSE else "points"
    lines = [f"| a | b | mean difference ({unit}) | p-value |", "|---|---|---:|---:|"]
    scale = _scale(metric)
    lines += [f"| {t['a']} | {t['b']} | {scale * t['mean_difference']:+.2f} | {t['p_value']:.4f} |" for t in tests]
    return "\n".join(lines)


def seeds_line(models: dict[str, dict]) -> str:
    return "Seeds: " + "; ".join(f"{name} {', '.join(map(str, m['seeds']))}" for name, m in models.items())


def markdown(summary: dict, title: str) -> str:
    """summary.md: the accuracy table, the seeds, the paired tests and their method."""
    metric = summary.get("metric", "accuracy")
    what = "Test MSE (lower is better)" if metric == MSE else "Test accuracy (%)"
    tests = "Paired tests (on per-question squared errors):" if metric == MSE else "Paired tests:"
    return "\n\n".join([f"# {title}", f"{what}, mean ± sample std over seeds:",
                        table3(summary["models"]), seeds_line(summary["models"]), tests,
                        tests_table(summary["tests"], metric), f"Method: {summary['method']}."]) + "\n"


def plot_summary(summary: dict, path: Path) -> Path:
    """summary.png: test accuracy per model, one dot per seed, a bar for mean ± std, the values written beside."""
    from training.plots import plt, save_figure

    names = list(summary["models"])
    metric = summary.get("metric", "accuracy")
    scale, label = _scale(metric), "test MSE" if metric == MSE else "test accuracy (%)"
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(names)))
    for row, name in enumerate(names):
        acc = summary["models"][name]["accuracy"]
        values = scale * np.asarray(acc["values"])
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(values, row + jitter, s=22, color="tab:blue", alpha=0.7, zorder=3)
        mean, std = scale * acc["mean"], scale * acc["std"]
        ax.errorbar(mean, row, xerr=std, fmt="D", color="black", capsize=5, markersize=6, zorder=4)
        ax.annotate(f"{mean:.2f} ± {std:.2f}", (mean + std, row), xytext=(8, 0), textcoords="offset points",
                    va="center", fontsize=9)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.margins(x=0.25)
    ax.set(xlabel=label, title=f"{label[0].upper()}{label[1:]} per model: seeds (dots), mean ± std (bar)")
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def write_reports(summary: dict, out: Path, title: str) -> None:
    """summary.json, summary.md and summary.png in ``out``."""
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    write_text_atomic(out / "summary.md", markdown(summary, title))
    plot_summary(summary, out / "summary.png")
