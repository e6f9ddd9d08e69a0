"""The open-ended head: a classifier over the A answers of ``answer_token_to_idx`` (logits (B, A)), scored by
accuracy; the vocabulary's unanswerable answer (``<UNK1>``, else ``<UNK>``: val/test answers outside the training
answer set) is never counted correct."""
from __future__ import annotations

from model.heads.base import Head, register_head

UNANSWERABLE_TOKENS = ("<UNK1>", "<UNK>")        # the first found is never counted correct
UNKNOWN_ANSWERS = ("<UNK0>", "<UNK1>", "<UNK>")  # answers a baseline never chooses


@register_head
class OpenEndedHead(Head):
    name = "open_ended"
    answers_are_tokens = True
    question_only_baseline = True
    default_losses = ("ce",)

    def unanswerable(self, vocab: dict) -> int | None:
        """``<UNK1>`` if the answer vocabulary has it, else ``<UNK>``; None with neither."""
        answers = vocab.get("answer_token_to_idx", {})
        return next((answers[t] for t in UNANSWERABLE_TOKENS if t in answers), None)

    def never_chosen(self, answer_tokens: list | None) -> list[int]:
        """The ids of the unknown answers (:data:`UNKNOWN_ANSWERS`), in id order."""
        return [i for i, token in enumerate(answer_tokens or []) if token in UNKNOWN_ANSWERS]
