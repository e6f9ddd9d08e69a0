"""The count head: one regression output (logits (B, 1)); the prediction is ``clamp(floor(logit + 0.5), 1, 10)``
(HCRN's rounding: halves up), scored by the mean squared error against the count (lower is better)."""
from __future__ import annotations

import numpy as np

from model.heads.base import Head, _float64, register_head

COUNT_RANGE = (1, 10)  # predictions are rounded (halves up) and clamped to this range (TGIF-QA counts)


@register_head
class CountHead(Head):
    name = "count"
    metric = "MSE"
    lower_is_better = True
    default_losses = ("mse",)
    readout_label = "clip readout"
    output_label = "classifier"

    def num_outputs(self, num_answers: int, num_candidates: int) -> int:
        return 1

    def check_answers(self, answers: np.ndarray, num_outputs: int) -> str | None:
        return None if answers.min() >= 0 else f"count answers must be >= 0, found {answers.min()}"

    def check_outputs(self, num_question_tokens: int, num_outputs: int) -> None:
        if num_outputs != 1:
            raise ValueError(f"the count head has one output (num_answers 1), got {num_outputs}")
        if num_question_tokens < 2:
            raise ValueError(f"need at least 2 question tokens, got {num_question_tokens}")

    def random_answers(self, size: int, num_outputs: int, generator):
        """(size,) int64 random counts in 1..10."""
        import torch
        return torch.randint(COUNT_RANGE[0], COUNT_RANGE[1] + 1, (size,), generator=generator)

    def predictions(self, logits):
        """(B,) int64 ``clamp(floor(logits[:, 0] + 0.5), 1, 10)``."""
        return (logits[:, 0].detach().float() + 0.5).floor().clamp(*COUNT_RANGE).long()

    def outcome(self, predictions, answers, unanswerable: int | None):
        """(N,) float64 squared error ``(prediction - answer)^2``."""
        return _float64(predictions - answers) ** 2

    def probabilities(self, logits):
        return None

    def majority(self, train_answers: np.ndarray, answer_tokens: list | None = None) -> int | None:
        """The count head's prior: the training mean count, rounded and clamped as its predictions are."""
        train_answers = np.asarray(train_answers, dtype=np.int64)
        if train_answers.size == 0:
            return None
        return int(np.clip(np.floor(train_answers.mean() + 0.5), *COUNT_RANGE))

    def answer_text(self, answer: int, tokens: list | None = None, candidates: list | None = None) -> str:
        return str(int(answer))

    def answer_details(self, answer: int, prediction: int, candidates: list | None = None) -> dict:
        return {"squared_error": float((prediction - answer) ** 2)}

    def prediction_fields(self, logits_row, probabilities_row, labels: list | None, top: list) -> dict:
        return {"count_output": round(float(logits_row[0]), 6)}

    def describe(self, answer, top_k: int) -> str:
        return f"{answer.prediction}   (regression output {float(answer.scores[0]):.3f})"

    def shown_answers(self, answer, top_k: int) -> list:
        return []
