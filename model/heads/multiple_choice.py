"""The multiple-choice head: each of the K candidates (B, K, L_a) is encoded with the question encoder, reads the
clips with a candidate-conditioned readout and is scored (logits (B, K)); the prediction is the best-scored
candidate, scored by accuracy. Questions and candidates share the word embedding question_answer_token_to_idx."""
from __future__ import annotations

from model.heads.base import Head, register_head


@register_head
class MultipleChoiceHead(Head):
    name = "multiple_choice"
    uses_candidates = True
    default_losses = ("ce",)
    readout_label = "conditioned readout (question, candidates)"
    output_label = "candidate scorer"

    def num_outputs(self, num_answers: int, num_candidates: int) -> int:
        """K candidates per question."""
        return num_candidates

    def build_output(self, module_dim: int, num_outputs: int, dropout: dict):
        from model.fusion import CandidateScorer, ConditionedReadout
        return (ConditionedReadout(module_dim, dropout["readout"]),
                CandidateScorer(module_dim, dropout["classifier"]))

    def logits(self, model, fused, sentence, candidates=None, candidates_len=None):
        """fused V_c (B, C, d), q (B, d), candidates (B, K, L_a), lengths (B, K) -> logits (B, K).

        The B * K candidates are flattened into rows (no loop over questions or candidates): each is encoded with
        the question encoder's embedding and sentence BiLSTM, reads the clips of its question, and is scored with
        the question's own readout and sentence vector.
        """
        b, k, width = candidates.shape
        lengths = candidates_len.to(candidates.device, non_blocking=True).long().clamp(1, width).reshape(b * k)
        answer = model.question_encoder.encode_sentence(candidates.reshape(b * k, width), lengths)    # (BK, d)
        question_video = model.readout(sentence, fused)                                                 # (B, d)
        clips = fused[:, None].expand(b, k, *fused.shape[1:]).reshape(b * k, *fused.shape[1:])       # (BK, C, d)
        answer_video = model.readout(answer, clips)                                                      # (BK, d)
        repeat = lambda x: x[:, None].expand(b, k, x.shape[-1]).reshape(b * k, x.shape[-1])  # noqa: E731
        scores = model.classifier(repeat(question_video), repeat(sentence), answer_video, answer)      # (BK,)
        return scores.reshape(b, k)

    def baseline_label(self, answer: int, tokens: list | None = None) -> str:
        """``candidate k``: the majority baseline always picks the same position."""
        return f"candidate {answer}"

    def answer_details(self, answer: int, prediction: int, candidates: list | None = None) -> dict:
        return {"candidates": candidates, "answer_index": answer, "prediction_index": prediction}

    def prediction_fields(self, logits_row, probabilities_row, labels: list | None, top: list) -> dict:
        return {"candidates": [{"candidate": c, "score": round(float(s), 6), "probability": round(float(p), 6)}
                               for c, s, p in zip(labels, logits_row, probabilities_row)]}

    def describe(self, answer, top_k: int) -> str:
        """The chosen candidate and every candidate's probability."""
        scores = "  ".join(f"[{k}] {c!r} {p:.3f}" for k, (c, p) in enumerate(zip(answer.labels, answer.probabilities)))
        return f"{answer.prediction!r}   ({scores})"

    def shown_answers(self, answer, top_k: int) -> list:
        """Every candidate, in candidate order."""
        return list(zip(answer.labels, answer.probabilities))
