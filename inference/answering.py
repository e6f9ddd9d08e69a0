"""One forward pass of a checkpoint over a batch (the format of training/data/batches.py) -> one :class:`Answer` per
question: the prediction as validate.py makes it (the answer head's, model/heads/), the answer
distribution, and (``explain``) the attention the model computed (model/attention.py)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from inference.models import Predictor
from inference.questions import EncodedQuestion
from model.attention import AttentionMaps, record_attention
from model.heads import get_head
from training.engine import candidate_inputs, model_inputs


@dataclass
class Answer:
    """One checkpoint's answer to one question.

    ``prediction_index``: the answer id (open-ended), the chosen candidate's index (multiple choice) or the rounded,
    clamped count; ``probabilities``: softmax over the A answers or the K candidates' scores (None for count);
    ``labels``: what each entry of ``probabilities`` is (answer tokens, candidate texts); ``scores``: the raw logits
    (A,) / (K,) / (1,); ``attention``: :class:`AttentionMaps` of this question alone (batch dimension 1) or None.
    """
    model: str
    head: str
    prediction: str
    prediction_index: int
    probabilities: np.ndarray | None
    labels: list[str] | None
    scores: np.ndarray
    attention: AttentionMaps | None = None

    def top(self, k: int) -> list[tuple[str, float]]:
        """The k most probable (label, probability), most probable first ([] for count)."""
        if self.probabilities is None:
            return []
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(self.labels[i], float(self.probabilities[i])) for i in order]

    def to_dict(self, top_k: int) -> dict:
        """The answer as predict.py's JSON: model, prediction and the head's fields (top answers, candidates'
        scores, or the count output)."""
        out = {"model": self.model, "prediction": self.prediction}
        out.update(get_head(self.head).prediction_fields(self.scores, self.probabilities, self.labels,
                                                         self.top(top_k)))
        return out


def question_batch(questions: list[EncodedQuestion], appearance: torch.Tensor, motion: torch.Tensor,
                   video_index: list[int]) -> dict:
    """A batch dict (training/data/batches.py format) for typed questions about the videos of ``appearance``
    (N, C, F, D) / ``motion`` (N, C, D); question b is about video row ``video_index[b]``."""
    lengths = [len(q.ids) for q in questions]
    tokens = torch.zeros(len(questions), max(lengths), dtype=torch.int64)
    for b, q in enumerate(questions):
        tokens[b, :len(q.ids)] = torch.tensor(q.ids)
    batch = {"appearance": appearance, "motion": motion, "question": tokens,
             "question_len": torch.tensor(lengths, dtype=torch.int64),
             "video_index": torch.tensor(video_index, dtype=torch.int64)}
    if questions[0].candidates is not None:
        k = len(questions[0].candidates)
        width = max(len(ids) for q in questions for _, _, ids in q.candidates)
        candidates = torch.zeros(len(questions), k, width, dtype=torch.int64)
        candidate_lengths = torch.zeros(len(questions), k, dtype=torch.int64)
        for b, q in enumerate(questions):
            for j, (_, _, ids) in enumerate(q.candidates):
                candidates[b, j, :len(ids)] = torch.tensor(ids)
                candidate_lengths[b, j] = len(ids)
        batch.update(candidates=candidates, candidates_len=candidate_lengths)
    return batch


@torch.no_grad()
def answer_batch(predictor: Predictor, batch: dict, candidate_texts: list[list[str]] | None = None,
                 explain: bool = False) -> list[Answer]:
    """The checkpoint's answers to the B questions of ``batch``; ``candidate_texts`` (B lists of K texts) for a
    multiple-choice head."""
    device = predictor.device
    batch = {k: v.to(device) for k, v in batch.items()}
    model = predictor.model
    maps = None
    if explain:
        with record_attention(model) as recorder:
            logits = model(*model_inputs(batch), **candidate_inputs(batch)).logits
        maps = recorder.maps()
    else:
        logits = model(*model_inputs(batch), **candidate_inputs(batch)).logits
    head = get_head(predictor.head)
    predictions = head.predictions(logits).cpu().numpy()
    scores = logits.float().cpu().numpy()
    probabilities = head.probabilities(logits)
    probabilities = None if probabilities is None else probabilities.cpu().numpy()
    tokens = predictor.answer_tokens if head.answers_are_tokens else None
    answers = []
    for b, index in enumerate(predictions.tolist()):
        candidates = candidate_texts[b] if head.uses_candidates else None
        text = head.answer_text(index, tokens, candidates)
        labels = None if probabilities is None else candidates if head.uses_candidates else tokens
        answers.append(Answer(predictor.name, predictor.head, text, int(index),
                              None if probabilities is None else probabilities[b], labels, scores[b],
                              None if maps is None else maps.select(b)))
    return answers
