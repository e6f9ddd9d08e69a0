"""A sweep's results: per-question test predictions of every run (cached), mean ± std over seeds, paired tests,
and the report files summary.json / summary.md / summary.png.

Each finished run's best.pt is evaluated once on the test split; the per-question outcome goes to
``<run folder>/test_predictions.json`` (recomputed only when best.pt changes):
    {"checkpoint", "checkpoint_mtime_ns", "checkpoint_size", "split": "test", "parameters",
     "accuracy": {"all", "count", "correct", "by_type", "counts", "correct_by_type"},
     "questions": {"question_id": [...], "type": [...], "answer": [...], "prediction": [...], "correct": [...]}}
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.metrics import TYPE_NAMES, UNANSWERABLE
from training.significance import DEFAULT_ROUNDS, describe_method, paired_permutation_test
from training.sweep_plan import DISPLAY, TEACHER, Plan, SweepError
from training.reporting import write_text_atomic

PREDICTIONS_FILE = "test_predictions.json"
COLUMNS = ("all", "what", "who", "how", "when", "where")  # the paper's Table 3 columns, 'All' first


@dataclass
class RunScores:
    """One run's test outcome: ``correct`` (N,) bool per question, ``question_ids`` (N,), its accuracy dict."""
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
    q, tokens = evaluator.questions, evaluator.answer_tokens()
    correct = (result.predictions == q.answers) & (q.answers != UNANSWERABLE)
    return {**stamp, "split": evaluator.split, "parameters": result.parameters, "accuracy": result.accuracy.to_dict(),
            "questions": {"question_id": q.question_ids.tolist(), "type": [TYPE_NAMES[t] for t in q.types],
                          "answer": [tokens[a] for a in q.answers],
                          "prediction": [tokens[p] for p in result.predictions],
                          "correct": correct.astype(int).tolist()}}


def run_scores(folder: str, seed: int, ckpt: Path, cache: Path, get_evaluator) -> RunScores:
    """The run's test outcome from ``cache``, evaluating ``ckpt`` (and writing the cache) when it is missing or
    stale. ``get_evaluator()`` returns a training.evaluation.SplitEvaluator on the test split (made once, lazily)."""
    stamp = _checkpoint_stamp(ckpt)
    cached = _read_cache(cache, stamp)
    if cached is None:
        cached = _evaluate(get_evaluator(), ckpt, stamp)
        write_text_atomic(cache, json.dumps(cached))
    questions = cached["questions"]
    return RunScores(folder, seed, np.array(questions["correct"], dtype=bool),
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
    for name in scores[0].accuracy["by_type"]:
        values = [s.accuracy["by_type"][name] for s in scores]
        if all(v is not None for v in values):
            per_type[name] = {k: v for k, v in mean_std(values).items() if k != "values"}
    return {"seeds": [s.seed for s in scores], "runs": [s.folder for s in scores],
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
    return {"models": models, "tests": paired_tests(by_model, plan.pairs, rounds), "method": describe_method(rounds)}


# ---------------------------------------------------------------------------------------------- report files
def _cell(stats: dict | None) -> str:
    return "-" if stats is None else f"{100 * stats['mean']:.2f} ± {100 * stats['std']:.2f}"


def table3(models: dict[str, dict], extra_rows: list[tuple[str, str, dict]] = ()) -> str:
    """The paper's Table 3 layout (model | parameters | All | What | Who | How | When | Where), mean ± std in %.

    ``extra_rows``: (name, parameters text, {column: text}) rows put first, e.g. baselines.
    """
    lines = ["| model | parameters | " + " | ".join(c.capitalize() for c in COLUMNS) + " |",
             "|---|---:|" + "---:|" * len(COLUMNS)]
    for name, params, cells in extra_rows:
        lines.append(f"| {name} | {params} | " + " | ".join(cells.get(c, "-") for c in COLUMNS) + " |")
    for name, entry in models.items():
        cells = [_cell(entry["accuracy"])] + [_cell(entry["per_type"].get(c)) for c in COLUMNS[1:]]
        lines.append(f"| {name} | {entry['parameters']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tests_table(tests: list[dict]) -> str:
    lines = ["| a | b | mean difference (points) | p-value |", "|---|---|---:|---:|"]
    lines += [f"| {t['a']} | {t['b']} | {100 * t['mean_difference']:+.2f} | {t['p_value']:.4f} |" for t in tests]
    return "\n".join(lines)


def seeds_line(models: dict[str, dict]) -> str:
    return "Seeds: " + "; ".join(f"{name} {', '.join(map(str, m['seeds']))}" for name, m in models.items())


def markdown(summary: dict, title: str) -> str:
    """summary.md: the accuracy table, the seeds, the paired tests and their method."""
    return "\n\n".join([f"# {title}", "Test accuracy (%), mean ± sample std over seeds:",
                        table3(summary["models"]), seeds_line(summary["models"]), "Paired tests:",
                        tests_table(summary["tests"]), f"Method: {summary['method']}."]) + "\n"


def plot_summary(summary: dict, path: Path) -> Path:
    """summary.png: test accuracy per model, one dot per seed, a bar for mean ± std, the values written beside."""
    from training.plots import plt, save_figure

    names = list(summary["models"])
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(names)))
    for row, name in enumerate(names):
        acc = summary["models"][name]["accuracy"]
        values = 100 * np.asarray(acc["values"])
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(values, row + jitter, s=22, color="tab:blue", alpha=0.7, zorder=3)
        mean, std = 100 * acc["mean"], 100 * acc["std"]
        ax.errorbar(mean, row, xerr=std, fmt="D", color="black", capsize=5, markersize=6, zorder=4)
        ax.annotate(f"{mean:.2f} ± {std:.2f}", (mean + std, row), xytext=(8, 0), textcoords="offset points",
                    va="center", fontsize=9)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.margins(x=0.25)
    ax.set(xlabel="test accuracy (%)", title="Test accuracy per model: seeds (dots), mean ± std (bar)")
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def write_reports(summary: dict, out: Path, title: str) -> None:
    """summary.json, summary.md and summary.png in ``out``."""
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    write_text_atomic(out / "summary.md", markdown(summary, title))
    plot_summary(summary, out / "summary.png")
