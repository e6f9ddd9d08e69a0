"""Scores overall, per question category and per category group, and the markdown tables that show them.

The categories are the dataset's (preprocess/datasets/: ``category_names``, ``category_groups``). MSVD-QA and
MSRVTT-QA type a question by its first word (what / who / how / when / where; anything else is "other"), read from
``questions[:, 0]`` through the vocabulary (:data:`TYPE_NAMES`, the default); other datasets give each question's
category in the question file. Groups pool several categories into an extra column (NExT-QA: causal, temporal,
descriptive). "All" comes first.

The metric is accuracy (open-ended and multiple choice) or, for the count head, the mean squared error of the
prediction ``clamp(floor(logit + 0.5), 1, 10)`` (lower is better): halves round up, as HCRN's validate.py
``(logits + 0.5).long().clamp(1, 10)`` (its truncation equals the floor wherever the clamp does not decide). The open-ended vocabulary's unanswerable answer
(``<UNK1>``, else ``<UNK>``: val/test answers outside the training answer set) is never counted correct, whatever
the model predicts; multiple choice and count have none. How a metric is named, stored and shown (columns,
per-question field, digits, unit, labels) is its :class:`Metric` (:func:`get_metric`); a head with another metric
registers one (:func:`register_metric`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from model.heads import get_head, head_names, metric_lower_is_better
from preprocess.text import QUESTION_TYPES

TYPE_NAMES = QUESTION_TYPES + ("other",)  # MSVD-QA / MSRVTT-QA categories (first word)
OTHER_TYPE = len(QUESTION_TYPES)
ACCURACY, MSE = "accuracy", "MSE"


@dataclass(frozen=True)
class Metric:
    """How a metric is named, stored and shown; a head names its metric by ``name`` (model/heads/).

    ``key``: the stem of metrics.csv / metrics.json columns and TensorBoard tags (``val_acc``); ``summary_key``: a
    sweep summary.json entry's overall score; ``outcome``: the per-question field (test_predictions.json, a
    SplitAccuracy dict's sum); ``outcome_label``: what a paired test compares per question; ``scale`` and
    ``digits``: a value v shows as ``scale * v`` with ``digits`` decimals, followed by ``unit``; ``axis_label``:
    a table title or plot axis; ``long_name``: a sweep table's caption; ``counted``: the per-question outcome is
    correctness, 1 / 0 (the split's unanswerable answer never correct), so sums are whole numbers.
    """
    name: str
    key: str
    summary_key: str
    outcome: str
    outcome_label: str
    scale: float
    digits: int
    unit: str
    axis_label: str
    long_name: str
    counted: bool

    @property
    def lower_is_better(self) -> bool:
        """The direction, declared once by the heads scored by this metric (model.heads.metric_lower_is_better)."""
        return metric_lower_is_better(self.name)

    def format(self, value: float | None) -> str:
        """``value`` scaled, with ``digits`` decimals (no unit); "-" for None (no questions)."""
        return "-" if value is None else f"{self.scale * value:.{self.digits}f}"


_METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Make ``metric`` known by its name to :func:`get_metric` (a head's ``metric``); returns it."""
    _METRICS[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    """The metric registered as ``name``; ValueError listing the registered ones otherwise."""
    if name not in _METRICS:
        raise ValueError(f"unknown metric {name!r}; registered: {', '.join(_METRICS)}")
    return _METRICS[name]


def registered_metrics() -> tuple[Metric, ...]:
    """Every registered metric, the built-in ones first."""
    return tuple(_METRICS.values())


def metric_of_columns(columns) -> Metric:
    """The metric of metrics.csv rows with these column names: the one with a ``val_<key>`` column, the latest
    registered first (a loss term may share a built-in key: the count head's ``mse``); accuracy when none has."""
    return next((m for m in reversed(registered_metrics()) if f"val_{m.key}" in columns), get_metric(ACCURACY))


register_metric(Metric(ACCURACY, key="acc", summary_key="accuracy", outcome="correct", outcome_label="correctness",
                       scale=100.0, digits=2, unit="%", axis_label="accuracy (%)", long_name="accuracy (%)",
                       counted=True))
register_metric(Metric(MSE, key="mse", summary_key="mse", outcome="squared_error", outcome_label="squared error",
                       scale=1.0, digits=3, unit="", axis_label="MSE", long_name="MSE of the rounded count",
                       counted=False))


def metric_for(head: str) -> str:
    """The metric of an answer head (model/heads/): MSE for count, accuracy otherwise."""
    return get_head(head).metric


def better(metric: str, new: float, best: float | None) -> bool:
    """Whether ``new`` beats ``best`` (None: nothing yet) under ``metric`` (the direction its heads give:
    accuracy higher, MSE lower)."""
    if best is None or best != best:
        return True
    return new < best if metric_lower_is_better(metric) else new > best


def unanswerable_answer(vocab: dict, head: str) -> int | None:
    """The id of the answer that is never counted correct (the head's: open-ended ``<UNK1>`` if the answer
    vocabulary has it, else ``<UNK>``); None for multiple choice, count, or a vocabulary with neither."""
    return get_head(head).unanswerable(vocab)


def predictions_from_logits(logits: torch.Tensor, head: str) -> torch.Tensor:
    """(B,) int64 predictions from logits (B, A), as the head makes them: the argmax answer / candidate, or for
    count (B, 1) ``clamp(floor(logits[:, 0] + 0.5), 1, 10)`` (HCRN's rounding: halves up, 2.5 -> 3)."""
    return get_head(head).predictions(logits)


def display_name(name: str) -> str:
    """A column title: lower-case words capitalised (what -> What, causal -> Causal); others kept (CW, query_color)."""
    return name.capitalize() if name.isalpha() and name.islower() else name


def token_type_lookup(question_token_to_idx: dict) -> np.ndarray:
    """(V,) int64: the question type index of every question token (OTHER_TYPE for non-question words)."""
    lookup = np.full(len(question_token_to_idx), OTHER_TYPE, dtype=np.int64)
    for type_index, word in enumerate(QUESTION_TYPES):
        if word in question_token_to_idx:
            lookup[question_token_to_idx[word]] = type_index
    return lookup


def question_types(questions: np.ndarray, question_token_to_idx: dict) -> np.ndarray:
    """(N,) int64 type index per question from its first token; ``questions`` is (N, L) token ids."""
    lookup = token_type_lookup(question_token_to_idx)
    first = questions[:, 0].astype(np.int64)
    if first.size and (first.min() < 0 or first.max() >= len(lookup)):
        raise ValueError(f"question token ids run outside the vocabulary of {len(lookup)} tokens")
    return lookup[first]


@dataclass
class SplitAccuracy:
    """Per-category sums (``names`` order) plus the overall figures of one split.

    ``correct``: per category, the questions answered right (accuracy) or the sum of squared errors (MSE);
    ``total``: questions per category. With no categories (``names`` empty) the lists hold one entry (all
    questions). ``groups``: column name -> member category names, pooled into extra columns.
    """
    correct: list
    total: list
    names: tuple = TYPE_NAMES
    groups: dict = field(default_factory=dict)
    metric: str = ACCURACY
    overall_correct: float = field(init=False)
    overall_total: int = field(init=False)

    def __post_init__(self):
        self.names = tuple(self.names)
        self.overall_correct = sum(self.correct)
        if get_metric(self.metric).counted:
            self.overall_correct = int(self.overall_correct)
        self.overall_total = int(sum(self.total))

    @property
    def overall(self) -> float:
        return self.overall_correct / self.overall_total if self.overall_total else float("nan")

    @property
    def lower_is_better(self) -> bool:
        return metric_lower_is_better(self.metric)

    def by_type(self) -> dict[str, float | None]:
        """The metric per category name; None for a category with no questions."""
        return {name: (c / t if t else None) for name, c, t in zip(self.names, self.correct, self.total)}

    def group_sums(self) -> dict[str, tuple[float, int]]:
        """(sum, questions) per group, pooled over its member categories."""
        index = {name: i for i, name in enumerate(self.names)}
        sums = {}
        for group, members in self.groups.items():
            rows = [index[m] for m in members]
            sums[group] = (sum(self.correct[i] for i in rows), int(sum(self.total[i] for i in rows)))
        return sums

    def by_group(self) -> dict[str, float | None]:
        return {g: (c / t if t else None) for g, (c, t) in self.group_sums().items()}

    def columns(self) -> list[tuple[str, float | None, int]]:
        """(column name, value, count) for All, each category ("Other" only when such questions exist), then each
        group."""
        cols = [("All", self.overall, self.overall_total)]
        for name, c, t in zip(self.names, self.correct, self.total):
            if name == "other" and t == 0:
                continue
            cols.append((display_name(name), c / t if t else None, t))
        for group, (c, t) in self.group_sums().items():
            cols.append((display_name(group), c / t if t else None, t))
        return cols

    def to_dict(self) -> dict:
        out = {"metric": self.metric, "all": self.overall, "count": self.overall_total,
               "correct": self.overall_correct, "by_type": self.by_type(),
               "counts": dict(zip(self.names, self.total)), "correct_by_type": dict(zip(self.names, self.correct))}
        outcome = get_metric(self.metric).outcome
        out[outcome], out[f"{outcome}_by_type"] = out.pop("correct"), out.pop("correct_by_type")
        if self.groups:
            out["by_group"] = self.by_group()
            out["group_counts"] = {g: t for g, (_, t) in self.group_sums().items()}
            out["groups"] = {g: list(m) for g, m in self.groups.items()}
        return out


def correct_mask(predictions: torch.Tensor, answers: torch.Tensor, unanswerable: int | None) -> torch.Tensor:
    """(N,) bool: prediction equals the answer and the answer is answerable (not ``unanswerable``; None: every
    answer is)."""
    right = predictions == answers
    return right if unanswerable is None else right & (answers != unanswerable)


def score_by_category(predictions: torch.Tensor, answers: torch.Tensor, types: torch.Tensor, names: tuple = TYPE_NAMES,
                      groups: dict | None = None, metric: str = ACCURACY, *,
                      unanswerable: int | None, head: str | None = None) -> SplitAccuracy:
    """Sum the metric per category; one host sync. All (N,) on one device; predictions -1 = not seen.

    accuracy: correct answers per category (as :func:`correct_mask`); MSE: ``(prediction - answer)^2`` summed per
    category; another metric: its head's outcome. ``types`` index ``names`` (all 0 when ``names`` is empty).
    ``unanswerable``: the answer id never counted correct (training.metrics.unanswerable_answer; None: none), given
    by every caller: id 1 is a real answer for multiple choice and for vocabularies without ``<UNK1>``. ``head``:
    the answer head whose per-question outcome is summed (model/heads/); None: the first registered head scored by
    ``metric`` (accuracy: open-ended, MSE: count).
    """
    seen = (predictions >= 0).to(torch.float64)
    if head is None:
        head = next(name for name in head_names() if get_head(name).metric == metric)
    score = get_head(head).outcome(predictions, answers, unanswerable) * seen
    bins = max(len(names), 1)
    total = torch.bincount(types, weights=seen, minlength=bins)
    right = torch.bincount(types, weights=score, minlength=bins)
    sums, counts = torch.stack([right, total]).tolist()
    if get_metric(metric).counted:
        sums = [int(round(v)) for v in sums]
    return SplitAccuracy(correct=sums, total=[int(round(v)) for v in counts], names=tuple(names),
                         groups=dict(groups or {}), metric=metric)


def format_value(value: float | None, metric: str = ACCURACY) -> str:
    """``value`` as ``metric`` shows it (accuracy a percentage with 2 decimals, MSE with 3); "-" for None."""
    return get_metric(metric).format(value)


def metric_unit(metric: str) -> str:
    """How a table titles the metric: ``accuracy (%)`` or ``MSE``."""
    return get_metric(metric).axis_label


def accuracy_table(acc: SplitAccuracy, title: str = "Accuracy (%)") -> str:
    """Markdown table: one row of the metric and one of question counts, columns All, each category, each group."""
    cols = acc.columns()
    header = "| " + " | ".join([title] + [name for name, _, _ in cols]) + " |"
    rule = "|" + "---|" * (len(cols) + 1)
    values = f"| {acc.metric} | " + " | ".join(format_value(a, acc.metric) for _, a, _ in cols) + " |"
    counts = "| questions | " + " | ".join(str(n) for _, _, n in cols) + " |"
    return "\n".join([header, rule, values, counts])


def comparison_table(rows: list[tuple[str, SplitAccuracy, int]], baseline: tuple[str, float] | None = None) -> str:
    """The paper's Table 3/4 layout: per model the metric overall (``All``, first as in every table), per category
    and per group, and trainable parameters; then the question counts per column.

    ``rows``: (model name, scores, trainable parameter count), all on the same split; ``baseline``: (majority
    answer, its accuracy), a first row when given.
    """
    first = rows[0][1] if rows else SplitAccuracy([0] * len(TYPE_NAMES), [0] * len(TYPE_NAMES))
    names = list(first.names)
    if "other" in names and not any(acc.total[acc.names.index("other")] for _, acc, _ in rows):
        names.remove("other")
    groups = list(first.groups)
    metric = first.metric
    titles = ["Model", "All", *(display_name(t) for t in names + groups), "Parameters"]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    if baseline is not None:
        answer, accuracy = baseline
        lines.append(f"| majority answer ('{answer}') | {format_value(accuracy, metric)} |"
                     + " |" * (len(names) + len(groups) + 1))
    for name, acc, params in rows:
        per_type, per_group = acc.by_type(), acc.by_group()
        values = ([format_value(acc.overall, metric)] + [format_value(per_type[t], metric) for t in names]
                  + [format_value(per_group[g], metric) for g in groups])
        size = f"{params / 1e6:.2f} M" if params >= 1e6 else f"{params:,}"
        lines.append(f"| {name} | " + " | ".join(values) + f" | {size} |")
    if rows:
        group_counts = first.group_sums()
        counts = ([first.overall_total] + [first.total[first.names.index(t)] for t in names]
                  + [group_counts[g][1] for g in groups])
        lines.append("| questions | " + " | ".join(f"{n:,}" for n in counts) + " | |")
    return "\n".join(lines)
