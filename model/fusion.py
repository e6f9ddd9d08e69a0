"""Visual fusion (MFB), clip readout and the open-ended / count classifier (docs/model.md section 4); the
multiple-choice head's conditioned readout and candidate scorer (docs/model.md section 8)."""
from __future__ import annotations

import torch
from torch import nn

from model.cpu_ops import Dropout, Linear, elu


class MFB(nn.Module):
    """Multimodal factorised bilinear pooling per clip.

    ``x0 = ELU(Linear(d, m*f)(V_a))``, ``x1 = ELU(Linear(d, m*f)(V_m))``, ``z = x0 * x1`` reshaped
    ``(..., m, f)`` and summed over f, ``V_c = ELU(Linear(m, d)(z))``.
    forward(V_a (B, C, d), V_m (B, C, d)) -> V_c (B, C, d).
    """

    def __init__(self, module_dim: int, mfb_dim: int, factor: int):
        super().__init__()
        self.mfb_dim, self.factor = mfb_dim, factor
        self.appearance_proj = Linear(module_dim, mfb_dim * factor)
        self.motion_proj = Linear(module_dim, mfb_dim * factor)
        self.out_proj = Linear(mfb_dim, module_dim)

    def forward(self, appearance: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        joint = elu(self.appearance_proj(appearance)) * elu(self.motion_proj(motion))       # (B, C, m*f)
        pooled = joint.reshape(*joint.shape[:-1], self.mfb_dim, self.factor).sum(-1)        # (B, C, m)
        return elu(self.out_proj(pooled))


class ClipReadout(nn.Module):
    """``x = dropout(V_c)``, ``att = softmax_C(Linear(d,1)(ELU(Linear(d,d,no bias)(x))))``, ``sum_C att * x``.

    forward(V_c (B, C, d)) -> V_all (B, d); :meth:`weights` gives ``att`` (B, C, 1).
    """

    def __init__(self, module_dim: int, dropout: float):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.proj = Linear(module_dim, module_dim, bias=False)
        self.score = Linear(module_dim, 1)

    def weights(self, clips: torch.Tensor) -> torch.Tensor:
        """``att`` (B, C, 1), softmax over the C clips, of (already dropped-out) clips (B, C, d)."""
        return torch.softmax(self.score(elu(self.proj(clips))), dim=1)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        clips = self.dropout(clips)
        return (self.weights(clips) * clips).sum(dim=1)


class AnswerClassifier(nn.Module):
    """``q' = Linear(d,d)(q)``; ``Linear(d,A)(dropout(BN(ELU(Linear(2d,d)(dropout([V_all ; q']))))))``.

    forward(V_all (B, d), q (B, d)) -> logits (B, A). BatchNorm1d uses batch statistics in train mode (a batch
    needs more than one question there) and running statistics in eval mode.
    """

    def __init__(self, module_dim: int, num_answers: int, dropout: float):
        super().__init__()
        self.question_proj = Linear(module_dim, module_dim)
        self.input_dropout = Dropout(dropout)
        self.hidden = Linear(2 * module_dim, module_dim)
        self.norm = nn.BatchNorm1d(module_dim)
        self.hidden_dropout = Dropout(dropout)
        self.out = Linear(module_dim, num_answers)

    def forward(self, video: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([video, self.question_proj(sentence)], dim=1)
        hidden = self.norm(elu(self.hidden(self.input_dropout(joint))))
        return self.out(self.hidden_dropout(hidden))


class ConditionedReadout(nn.Module):
    """A readout of the clips conditioned on a sentence vector (HCRN's feature aggregation):
    ``x = dropout(V_c)``, ``p = Linear(d,d,no bias)(s)``, ``v = Linear(d,d,no bias)(x)``,
    ``att = softmax_C(Linear(d,1)(ELU(Linear(2d,d)([v ; p * v]))))``, ``sum_C att * x``.

    forward(s (M, d), V_c (M, C, d)) -> (M, d). Used once per question (s = q) and once per candidate
    (s = a_k, with the question's clips repeated K times); :meth:`weights` gives ``att`` (M, C, 1).
    """

    def __init__(self, module_dim: int, dropout: float):
        super().__init__()
        self.dropout = Dropout(dropout)
        self.sentence_proj = Linear(module_dim, module_dim, bias=False)
        self.clip_proj = Linear(module_dim, module_dim, bias=False)
        self.joint = Linear(2 * module_dim, module_dim)
        self.score = Linear(module_dim, 1)

    def weights(self, sentence: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
        """``att`` (M, C, 1), softmax over the C clips, for s (M, d) and (already dropped-out) clips (M, C, d)."""
        projected = self.clip_proj(clips)                                           # (M, C, d)
        conditioned = self.sentence_proj(sentence)[:, None, :] * projected          # (M, C, d)
        hidden = elu(self.joint(torch.cat([projected, conditioned], dim=-1)))       # (M, C, d)
        return torch.softmax(self.score(hidden), dim=1)

    def forward(self, sentence: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
        clips = self.dropout(clips)
        return (self.weights(sentence, clips) * clips).sum(dim=1)


class CandidateScorer(nn.Module):
    """One score per (question, candidate) pair (HCRN's multiple-choice output unit):
    ``q' = Linear(d,d)(q)``, ``a' = Linear(d,d)(a)``,
    ``score = Linear(d,1)(dropout(BN(ELU(Linear(4d,d)(dropout([V_q ; q' ; V_a ; a']))))))``.

    forward(V_q (M, d), q (M, d), V_a (M, d), a (M, d)) -> (M,) scores; M = B * K rows, one per candidate. BatchNorm1d
    uses the statistics of the M rows in train mode and running statistics in eval mode.
    """

    def __init__(self, module_dim: int, dropout: float):
        super().__init__()
        self.question_proj = Linear(module_dim, module_dim)
        self.candidate_proj = Linear(module_dim, module_dim)
        self.input_dropout = Dropout(dropout)
        self.hidden = Linear(4 * module_dim, module_dim)
        self.norm = nn.BatchNorm1d(module_dim)
        self.hidden_dropout = Dropout(dropout)
        self.out = Linear(module_dim, 1)

    def forward(self, question_video: torch.Tensor, sentence: torch.Tensor, candidate_video: torch.Tensor,
                candidate: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([question_video, self.question_proj(sentence), candidate_video,
                           self.candidate_proj(candidate)], dim=1)                  # (M, 4d)
        hidden = self.norm(elu(self.hidden(self.input_dropout(joint))))
        return self.out(self.hidden_dropout(hidden))[:, 0]
