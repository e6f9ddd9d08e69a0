"""Accuracy overall and per question type, and the markdown tables that show them.

A question's type is its first word (what / who / how / when / where; anything else is "other"), read from
``questions[:, 0]`` through the vocabulary. Answer class 1 (``<UNK1>``) marks val/test answers outside the
training answer set: such a question is never counted correct, whatever the model predicts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from preprocess.text import QUESTION_TYPES

TYPE_NAMES = QUESTION_TYPES + ("other",)
OTHER_TYPE = len(QUESTION_TYPES)
UNANSWERABLE = 1  # <UNK1>


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
    """Correct and total counts per type (``TYPE_NAMES`` order) plus the overall figures."""
    correct: list[int]
    total: list[int]
    overall_correct: int = field(init=False)
    overall_total: int = field(init=False)

    def __post_init__(self):
        self.overall_correct = int(sum(self.correct))
        self.overall_total = int(sum(self.total))

    @property
    def overall(self) -> float:
        return self.overall_correct / self.overall_total if self.overall_total else float("nan")

    def by_type(self) -> dict[str, float | None]:
        """Accuracy per type name; None for a type with no questions."""
        return {name: (c / t if t else None) for name, c, t in zip(TYPE_NAMES, self.correct, self.total)}

    def columns(self) -> list[tuple[str, float | None, int]]:
        """(column name, accuracy, count) for All then each type; "Other" only when such questions exist."""
        cols = [("All", self.overall, self.overall_total)]
        for name, c, t in zip(TYPE_NAMES, self.correct, self.total):
            if name == "other" and t == 0:
                continue
            cols.append((name.capitalize(), c / t if t else None, t))
        return cols

    def to_dict(self) -> dict:
        return {"all": self.overall, "count": self.overall_total, "correct": self.overall_correct,
                "by_type": self.by_type(), "counts": dict(zip(TYPE_NAMES, self.total)),
                "correct_by_type": dict(zip(TYPE_NAMES, self.correct))}


def correct_mask(predictions: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """(N,) bool: prediction equals the answer and the answer is answerable (not ``<UNK1>``)."""
    return (predictions == answers) & (answers != UNANSWERABLE)


def accuracy_by_type(predictions: torch.Tensor, answers: torch.Tensor, types: torch.Tensor) -> SplitAccuracy:
    """Count correct predictions per type; one host sync. All (N,) on one device; predictions -1 = not seen."""
    correct = correct_mask(predictions, answers).to(torch.float64)
    seen = (predictions >= 0).to(torch.float64)
    total = torch.bincount(types, weights=seen, minlength=len(TYPE_NAMES))
    right = torch.bincount(types, weights=correct, minlength=len(TYPE_NAMES))
    counts = torch.stack([right, total]).to(torch.int64).tolist()
    return SplitAccuracy(correct=counts[0], total=counts[1])


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.2f}"


def accuracy_table(acc: SplitAccuracy, title: str = "Accuracy (%)") -> str:
    """Markdown table: one row of accuracies and one of question counts, columns All, What, ... Where."""
    cols = acc.columns()
    header = "| " + " | ".join([title] + [name for name, _, _ in cols]) + " |"
    rule = "|" + "---|" * (len(cols) + 1)
    values = "| accuracy | " + " | ".join(_pct(a) for _, a, _ in cols) + " |"
    counts = "| questions | " + " | ".join(str(n) for _, _, n in cols) + " |"
    return "\n".join([header, rule, values, counts])


def comparison_table(rows: list[tuple[str, SplitAccuracy, int]], baseline: tuple[str, float] | None = None) -> str:
    """The paper's Table 3/4 layout: per model accuracy overall (``All``, first as in every table) and per type,
    and trainable parameters; then the question counts per column.

    ``rows``: (model name, accuracy, trainable parameter count); ``baseline``: (majority answer, its accuracy), a
    first row when given.
    """
    with_other = any(acc.total[OTHER_TYPE] for _, acc, _ in rows)
    types = list(TYPE_NAMES if with_other else QUESTION_TYPES)
    lines = ["| Model | All | " + " | ".join(t.capitalize() for t in types) + " | Parameters |",
             "|---|" + "---|" * (len(types) + 2)]
    if baseline is not None:
        answer, accuracy = baseline
        lines.append(f"| majority answer ('{answer}') | {_pct(accuracy)} |" + " |" * (len(types) + 1))
    for name, acc, params in rows:
        per_type = acc.by_type()
        values = [_pct(acc.overall)] + [_pct(per_type[t]) for t in types]
        size = f"{params / 1e6:.2f} M" if params >= 1e6 else f"{params:,}"
        lines.append(f"| {name} | " + " | ".join(values) + f" | {size} |")
    if rows:
        acc = rows[0][1]
        counts = [acc.overall_total] + [acc.total[TYPE_NAMES.index(t)] for t in types]
        lines.append("| questions | " + " | ".join(f"{n:,}" for n in counts) + " | |")
    return "\n".join(lines)
