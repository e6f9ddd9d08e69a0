"""A sweep's results: per-question test outcomes of every run (cached), mean ± std over seeds, paired tests,
and the report files summary.json / summary.md / summary.png, for every answer head and dataset.

The metric, the categories and the groups are the test split's (training.evaluation.SplitEvaluator, as
training/metrics.py scores them): accuracy for open-ended (an answer equal to the split's unanswerable id,
``<UNK1>`` or FrameQA's ``<UNK>``, is never correct) and multiple choice (the chosen candidate is the right one), MSE
of the rounded count for count (lower is better). The columns are All, the dataset's categories (MSVD-QA /
MSRVTT-QA: the first-word types what / who / how / when / where, "other" only when such questions exist) and its
category groups (NExT-QA: causal, temporal, descriptive); a dataset without categories has All only.

The trainer's last pass (best.pt on the test split) writes each run's per-question outcome to
``<run folder>/test_predictions.json`` (:func:`write_run_predictions`), and the sweep reads it instead of
evaluating best.pt again; a run without it (an older run, a given teacher) is evaluated once and the file written.
The file is keyed on content: it is recomputed when best.pt's bytes, the test question file's bytes or the resolved
config differ from those it was computed from (sha256 of each; the config is the sweep's --cfg and overrides, or
the run's own config.yaml for the trainer's file), when it has another ``format``, or when it is no readable cache
(not JSON, not UTF-8, not a mapping, lists of different lengths):
    {"checkpoint", "checkpoint_sha256", "test_file_sha256", "config_sha256", "format": 3, "split": "test", "head",
     "metric",
     "parameters", "accuracy": SplitAccuracy.to_dict() (training/metrics.py; "all" is the MSE for count),
     "questions": {"question_id": [...], "type": [category name or null], "answer": [...], "prediction": [...],
                   "correct": [0/1] (accuracy) | "squared_error": [...] (count),
                   multiple choice also "answer_index", "prediction_index": [candidate positions]}}
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.heads import get_head, metric_lower_is_better
from training.metrics import ACCURACY, display_name, get_metric, registered_metrics
from training.significance import DEFAULT_ROUNDS, describe_method, paired_permutation_test
from training.sweep_plan import DISPLAY, TEACHER, Plan, SweepError
from utils.atomic import write_text_atomic

PREDICTIONS_FILE = "test_predictions.json"
CACHE_FORMAT = 3  # test_predictions.json layout; a cache of another format is recomputed


def score_key(metric: str) -> str:
    """The key of a model's overall score in summary.json: ``accuracy`` or, for MSE, ``mse``."""
    return get_metric(metric).summary_key


def outcome_name(metric: str) -> str:
    """What the paired test compares per question."""
    return get_metric(metric).outcome_label


@dataclass
class RunScores:
    """One run's test outcome: ``outcome`` (N,) float64 per question (1/0 correct, or the squared error for MSE),
    ``question_ids`` (N,), its SplitAccuracy dict (``accuracy``; holds "metric")."""
    folder: str
    seed: int
    outcome: np.ndarray
    question_ids: np.ndarray
    accuracy: dict
    parameters: int

    @property
    def metric(self) -> str:
        return self.accuracy.get("metric", ACCURACY)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def evaluation_key(cfg) -> dict:
    """What a cached test outcome depends on besides the checkpoint: the test question file's sha256 (None when it
    is missing: the evaluation then fails by itself) and the sha256 of the resolved config (JSON, sorted keys)."""
    from preprocess.datasets.files import dataset_path
    from utils.config import to_dict
    test_file = dataset_path(cfg, "test_question_pt")
    config = json.dumps(to_dict(cfg), sort_keys=True, default=str).encode("utf-8")
    return {"test_file_sha256": file_sha256(test_file) if test_file.is_file() else None,
            "config_sha256": hashlib.sha256(config).hexdigest()}


def _checkpoint_stamp(ckpt: Path, key: dict | None = None) -> dict:
    """The cache key of ``ckpt``'s outcome: its path (shown only), its sha256 and ``key`` (evaluation_key)."""
    return {"checkpoint": str(ckpt), "checkpoint_sha256": file_sha256(ckpt), **(key or {})}


_CACHE_FIELDS = {"metric": str, "head": str, "parameters": int, "accuracy": dict, "questions": dict}


def _read_cache(path: Path, stamp: dict) -> dict | None:
    """The cached predictions when they were computed from the same checkpoint bytes, test file and config
    (``stamp`` less the path: a moved sweep folder keeps its caches) in this format, else None; None too for any
    file that is no readable cache (it is then recomputed and rewritten)."""
    try:
        cached = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(cached, dict) or cached.get("format") != CACHE_FORMAT:
        return None
    if any(cached.get(k) != v for k, v in stamp.items() if k != "checkpoint"):
        return None
    if not all(isinstance(cached.get(k), t) for k, t in _CACHE_FIELDS.items()):
        return None
    questions = cached["questions"]
    lists = [questions.get(k) for k in ("question_id", get_metric(cached["metric"]).outcome)]
    if not all(isinstance(v, list) for v in lists) or len({len(v) for v in lists}) != 1 \
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for v in lists for x in v) \
            or not isinstance(cached["accuracy"].get("all"), (int, float)):
        return None
    return cached


def _evaluate(evaluator, ckpt: Path, stamp: dict) -> dict:
    """Per-question outcome of ``ckpt`` on the evaluator's split, in the cache's layout (module docstring)."""
    result = evaluator.evaluate(ckpt)
    return outcome_record(evaluator, result.predictions, result.accuracy, result.parameters, stamp)


def outcome_record(view, predictions: np.ndarray, accuracy, parameters: int, stamp: dict) -> dict:
    """The cache's layout (module docstring) of ``predictions`` (N,) on ``view``'s split (a
    training.evaluation.SplitView), with their ``accuracy`` (SplitAccuracy), the model's ``parameters`` and the
    cache key ``stamp``."""
    q, text, head = view.questions, view.answer_texts(), view.head
    predictions = np.asarray(predictions, dtype=np.int64)
    questions = {"question_id": q.question_ids.tolist(),
                 "type": [view.category_name(i) for i in range(len(q))],
                 "answer": [text(i, a) for i, a in enumerate(q.answers)],
                 "prediction": [text(i, p) for i, p in enumerate(predictions)]}
    metric = get_metric(accuracy.metric)
    if metric.counted:
        outcome = view.correct(predictions)
    else:  # no answer is unanswerable under a metric other than correctness
        outcome = get_head(head).outcome(predictions, q.answers.astype(np.int64), None)
    # whole numbers (1 / 0, squared errors of counts) written as integers
    questions[metric.outcome] = [int(v) if float(v).is_integer() else v for v in outcome.tolist()]
    if get_head(head).uses_candidates:
        questions["answer_index"], questions["prediction_index"] = q.answers.tolist(), predictions.tolist()
    return {**stamp, "format": CACHE_FORMAT, "split": view.split, "head": head,
            "metric": accuracy.metric, "parameters": int(parameters),
            "accuracy": accuracy.to_dict(), "questions": questions}


def run_evaluation_key(run_dir: Path) -> dict | None:
    """:func:`evaluation_key` of the config a training run wrote into its folder (config.yaml, the config of the
    trainer's own test pass); None when the folder has none or it no longer loads (a run of an older version: its
    best.pt is then evaluated as before)."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        return None
    from training.run_schema import load_config
    from utils.config import ConfigError
    from utils.strict_yaml import StrictYAMLError
    try:
        return evaluation_key(load_config(config))
    except (ConfigError, StrictYAMLError):
        return None


def write_run_predictions(run_dir: Path, view, predictions: np.ndarray, accuracy, parameters: int) -> None:
    """The trainer's test pass of ``run_dir``/best.pt as the run's PREDICTIONS_FILE, keyed on best.pt's bytes and
    the run's own config (:func:`run_evaluation_key`): a sweep then reads it instead of evaluating best.pt again.
    ``view``: a training.evaluation.SplitView on the test split; ``predictions`` (N,) in its question order."""
    stamp = _checkpoint_stamp(run_dir / "best.pt", run_evaluation_key(run_dir))
    write_text_atomic(run_dir / PREDICTIONS_FILE, json.dumps(outcome_record(view, predictions, accuracy, parameters,
                                                                            stamp)))


def run_scores(folder: str, seed: int, ckpt: Path, cache: Path, get_evaluator, key: dict | None = None,
               run_dir: Path | None = None) -> RunScores:
    """The run's test outcome from ``cache``, evaluating ``ckpt`` (and writing the cache) when it is missing or
    stale. ``get_evaluator()`` returns a training.evaluation.SplitEvaluator on the test split (made once, lazily);
    ``key``: :func:`evaluation_key` of its config. With ``run_dir`` (a training run's folder), a cache the trainer
    wrote from its own test pass (:func:`write_run_predictions`, keyed on the run's config.yaml) is read too; a run
    without one (an older run) is evaluated."""
    stamp = _checkpoint_stamp(ckpt, key)
    cached = _read_cache(cache, stamp)
    if cached is None and run_dir is not None and (run_key := run_evaluation_key(run_dir)) is not None:
        cached = _read_cache(cache, {**stamp, **run_key})
    if cached is None:
        cached = _evaluate(get_evaluator(), ckpt, stamp)
        write_text_atomic(cache, json.dumps(cached))
    questions = cached["questions"]
    outcome = questions[get_metric(cached["metric"]).outcome]
    return RunScores(folder, seed, np.array(outcome, dtype=np.float64),
                     np.array(questions["question_id"], dtype=np.int64), cached["accuracy"], cached["parameters"])


def collect_scores(plan: Plan, get_evaluator, key: dict | None = None) -> dict[str, list[RunScores]]:
    """Model name -> the scores of its runs (in seed order), for every run of the plan plus a given teacher;
    ``key``: :func:`evaluation_key` of the evaluator's config (part of every cache's key)."""
    by_model: dict[str, list[RunScores]] = {}
    for run in plan.runs:
        run_dir = plan.out / run.folder
        by_model.setdefault(run.model, []).append(
            run_scores(run.folder, run.seed, run_dir / "best.pt", run_dir / PREDICTIONS_FILE, get_evaluator, key,
                       run_dir))
    if plan.teacher_ckpt is not None:
        by_model[DISPLAY[TEACHER]] = [run_scores(str(plan.teacher_ckpt), -1, plan.teacher_ckpt,
                                                     plan.out / "given_teacher" / PREDICTIONS_FILE, get_evaluator, key)]
    return by_model


def mean_std(values: list[float]) -> dict:
    """{"mean", "std", "values"}; std is the sample standard deviation (ddof=1), 0 for a single value."""
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
            "values": [float(v) for v in array]}


def _mean_std_of(scores: list[RunScores], table: str) -> dict:
    """{name: {"mean", "std"}} over the runs of a SplitAccuracy dict table (by_type / by_group), for the names every
    run has a value for (a category without test questions has none)."""
    out = {}
    for name in scores[0].accuracy.get(table, {}):
        values = [s.accuracy[table][name] for s in scores]
        if all(v is not None for v in values):
            out[name] = {k: v for k, v in mean_std(values).items() if k != "values"}
    return out


def model_summary(scores: list[RunScores], settings: dict) -> dict:
    """One model's entry of summary.json from its runs: {"seeds", "runs", "accuracy" | "mse": {"mean", "std",
    "values"}, "per_type": {category: {"mean", "std"}}, ["per_group": {group: {"mean", "std"}},] "parameters",
    "settings"}."""
    entry = {"seeds": [s.seed for s in scores], "runs": [s.folder for s in scores],
             score_key(scores[0].metric): mean_std([s.accuracy["all"] for s in scores]),
             "per_type": _mean_std_of(scores, "by_type")}
    if scores[0].accuracy.get("groups"):
        entry["per_group"] = _mean_std_of(scores, "by_group")
    return {**entry, "parameters": scores[0].parameters, "settings": settings}


def paired_tests(by_model: dict[str, list[RunScores]], pairs: list[tuple[str, str]],
                 rounds: int = DEFAULT_ROUNDS) -> list[dict]:
    """summary.json's "tests": a paired permutation test per (a, b) pair, on the same test questions, of the
    per-question correctness (accuracy) or squared error (MSE); ``mean_difference`` = a's mean minus b's."""
    tests = []
    for a, b in pairs:
        ids = by_model[a][0].question_ids
        if any(not np.array_equal(s.question_ids, ids) for s in by_model[a] + by_model[b]):
            raise SweepError(f"{a} and {b} were scored on different test questions")
        if len({s.metric for s in by_model[a] + by_model[b]}) != 1:
            raise SweepError(f"{a} and {b} were scored with different metrics")
        result = paired_permutation_test(np.stack([s.outcome for s in by_model[a]]),
                                         np.stack([s.outcome for s in by_model[b]]), rounds=rounds)
        tests.append({"a": a, "b": b, "mean_difference": result.mean_difference, "p_value": result.p_value,
                      "method": result.method, "differing_questions": result.num_differing})
    return tests


def summary_columns(scores: RunScores) -> tuple[list[str], list[str]]:
    """(categories, groups) shown as columns after All: the split's category names ("other" only when the split
    has such questions, as training/metrics.py's tables) and its group names."""
    counts = scores.accuracy.get("counts", {})
    categories = [name for name, n in counts.items() if not (name == "other" and n == 0)]
    return categories, list(scores.accuracy.get("groups", {}))


def summarize(plan: Plan, by_model: dict[str, list[RunScores]], settings: dict[str, dict],
              rounds: int = DEFAULT_ROUNDS) -> dict:
    """The summary.json document: {"metric": "accuracy" | "MSE", "lower_is_better", "columns": ["all", categories...,
    groups...], "categories", "groups", "models": {name: entry}, "tests": [...], "method": one line}."""
    first = next(iter(by_model.values()))[0]
    metric = first.metric
    categories, groups = summary_columns(first)
    models = {name: model_summary(scores, settings.get(name, {})) for name, scores in by_model.items()}
    return {"metric": metric, "lower_is_better": metric_lower_is_better(metric), "columns": ["all", *categories, *groups],
            "categories": categories, "groups": groups, "models": models,
            "tests": paired_tests(by_model, plan.pairs, rounds),
            "method": describe_method(rounds, outcome_name(metric))}


# ---------------------------------------------------------------------------------------------- report files
def _metric_of(models: dict[str, dict]) -> str:
    """The metric whose score key the entries hold ("mse": MSE), the latest registered first, else accuracy
    (summary.json entries name their score's key)."""
    keys = {k for entry in models.values() for k in entry}
    return next((m.name for m in reversed(registered_metrics()) if m.summary_key in keys), ACCURACY)


def _cell(stats: dict | None, metric: str = ACCURACY) -> str:
    if stats is None:
        return "-"
    spec = get_metric(metric)
    return f"{spec.format(stats['mean'])} ± {spec.format(stats['std'])}"


def _stats(entry: dict, column: str, metric: str) -> dict | None:
    """A model's {"mean", "std"} for a column: "all", a category or a group."""
    if column == "all":
        return entry[score_key(metric)]
    return entry["per_type"].get(column, entry.get("per_group", {}).get(column))


def infer_columns(models: dict[str, dict]) -> list[str]:
    """All, then every category and every group some model has a value for, in their first-seen order."""
    columns = ["all"]
    for table in ("per_type", "per_group"):
        for entry in models.values():
            columns += [c for c in entry.get(table, {}) if c not in columns]
    return columns


def table3(models: dict[str, dict], extra_rows: list[tuple[str, str, dict]] = (), columns: list[str] | None = None,
           metric: str | None = None) -> str:
    """The paper's Table 3 layout (model | parameters | All | each category | each group), mean ± std: accuracy in
    %, or MSE.

    ``extra_rows``: (name, parameters text, {column: text}) rows put first, e.g. baselines; ``columns``: column keys
    ("all", category and group names; default: those the models have); ``metric``: default from the entries.
    """
    columns = list(columns) if columns is not None else infer_columns(models)
    metric = metric or _metric_of(models)
    titles = ["All" if c == "all" else display_name(c) for c in columns]
    lines = ["| model | parameters | " + " | ".join(titles) + " |", "|---|---:|" + "---:|" * len(columns)]
    for name, params, cells in extra_rows:
        lines.append(f"| {name} | {params} | " + " | ".join(cells.get(c, "-") for c in columns) + " |")
    for name, entry in models.items():
        cells = [_cell(_stats(entry, c, metric), metric) for c in columns]
        lines.append(f"| {name} | {entry['parameters']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tests_table(tests: list[dict], metric: str = ACCURACY) -> str:
    """The paired tests: a - b in accuracy points, or in MSE (negative: a has the lower error)."""
    spec = get_metric(metric)
    unit = "points" if spec.unit == "%" else spec.name  # percentage points
    lines = [f"| a | b | mean difference ({unit}) | p-value |", "|---|---|---:|---:|"]
    lines += [f"| {t['a']} | {t['b']} | {spec.scale * t['mean_difference']:+.{spec.digits}f} | {t['p_value']:.4f} |"
              for t in tests]
    return "\n".join(lines)


def seeds_line(models: dict[str, dict]) -> str:
    return "Seeds: " + "; ".join(f"{name} {', '.join(map(str, m['seeds']))}" for name, m in models.items())


def _caption(metric: str) -> str:
    spec = get_metric(metric)
    return f"Test {spec.long_name}{_lower_is_better(spec)}, mean ± sample std over seeds:"


def _lower_is_better(spec) -> str:
    return " (lower is better)" if spec.lower_is_better else ""


def markdown(summary: dict, title: str) -> str:
    """summary.md: the score table, the seeds, the paired tests and their method."""
    metric = summary.get("metric", ACCURACY)
    return "\n\n".join([f"# {title}", _caption(metric),
                        table3(summary["models"], columns=summary.get("columns"), metric=metric),
                        seeds_line(summary["models"]), "Paired tests (a minus b):",
                        tests_table(summary["tests"], metric), f"Method: {summary['method']}."]) + "\n"


def plot_summary(summary: dict, path: Path) -> Path:
    """summary.png: the test score per model (accuracy in %, or MSE), one dot per seed, a bar for mean ± std, the
    values written beside. Lines marked ``pragma: no mutate`` only style the figure (sizes, colours, jitter,
    margins): mutation testing leaves them out (docs/mutation.md)."""
    from training.plots import plt, save_figure

    metric = summary.get("metric", ACCURACY)
    spec = get_metric(metric)
    scale, digits = spec.scale, spec.digits
    label = f"test {spec.axis_label}{_lower_is_better(spec)}"
    names = list(summary["models"])
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(names)))  # pragma: no mutate
    for row, name in enumerate(names):
        stats = summary["models"][name][score_key(metric)]
        values = scale * np.asarray(stats["values"])
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)  # pragma: no mutate
        ax.scatter(values, row + jitter, s=22, color="tab:blue", alpha=0.7, zorder=3)  # pragma: no mutate
        mean, std = scale * stats["mean"], scale * stats["std"]
        ax.errorbar(mean, row, xerr=std, fmt="D", color="black", capsize=5, markersize=6, zorder=4)  # pragma: no mutate
        ax.annotate(f"{mean:.{digits}f} ± {std:.{digits}f}", (mean + std, row), xytext=(8, 0),
                    textcoords="offset points", va="center", fontsize=9)  # pragma: no mutate
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.margins(x=0.25)  # pragma: no mutate
    ax.set(xlabel=label, title=f"Test {metric} per model: seeds (dots), mean ± std (bar)")
    ax.grid(axis="x", alpha=0.3)  # pragma: no mutate
    return save_figure(fig, path)


def write_reports(summary: dict, out: Path, title: str) -> None:
    """summary.json, summary.md and summary.png in ``out``."""
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    write_text_atomic(out / "summary.md", markdown(summary, title))
    plot_summary(summary, out / "summary.png")
