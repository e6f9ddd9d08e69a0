"""DualVGR units: question attention, clip scores, graph layers, independent/joint fusion, residual
(docs/model.md section 3)."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from model.cpu_ops import Dropout, Linear
from model.gat import GraphAttention, stacked_graph_attention

ATTENTION_EPS = 1e-5


class QuestionAttention(nn.Module):
    """``a = softmax_L(Linear(d,1)(l2norm(Linear(d,d)(Q_e))))`` over the valid words, renormalised
    ``a / (sum + 1e-5)``; ``Q_att = a^T Q_w``.

    Positions beyond a question's length are excluded from the softmax (logit -inf) rather than zeroed after it.
    Both give ``softmax over the valid words`` exactly; excluding them first also keeps the 1e-5 guard independent
    of how much padding the batch carries, so padding never changes the result.

    forward(Q_e (B, L, d), Q_w (B, L, w), mask (B, L) bool) -> (Q_att (B, w), a (B, L)).
    """

    def __init__(self, module_dim: int):
        super().__init__()
        self.proj = Linear(module_dim, module_dim)
        self.score = Linear(module_dim, 1)

    def forward(self, contextual: torch.Tensor, words: torch.Tensor, mask: torch.Tensor):
        logits = self.score(F.normalize(self.proj(contextual), dim=-1))[..., 0]    # (B, L)
        logits = logits.float().masked_fill(~mask, float("-inf"))
        weights = torch.softmax(logits, dim=1) * mask
        weights = weights / (weights.sum(dim=1, keepdim=True) + ATTENTION_EPS)
        attended = (weights[:, :, None].to(words.dtype) * words).sum(dim=1)          # (B, w)
        return attended, weights


class ClipScores(nn.Module):
    """``S = sigmoid(V . Linear(w, d)(Q_att))``: V (B, C, d), Q_att (B, w) -> S (B, C, 1)."""

    def __init__(self, word_dim: int, module_dim: int):
        super().__init__()
        self.proj = Linear(word_dim, module_dim)

    def forward(self, clips: torch.Tensor, attended_question: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((clips * self.proj(attended_question)[:, None, :]).sum(-1, keepdim=True))


class GraphLayer(nn.Module):
    """One graph layer: four GAT blocks with their own weights (appearance/motion x independent/joint).

    forward(G_a, S_a, G_m, S_m) with G (B, C, d), S (B, C, 1) ->
    (indep_a, joint_a, indep_m, joint_m), each (B, C, d). Both blocks of a stream read the same input. The four
    blocks run as one batched computation (:func:`stacked_graph_attention`), equal to calling each block.
    """

    def __init__(self, module_dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.appearance_independent = GraphAttention(module_dim, num_heads, dropout)
        self.appearance_joint = GraphAttention(module_dim, num_heads, dropout)
        self.motion_independent = GraphAttention(module_dim, num_heads, dropout)
        self.motion_joint = GraphAttention(module_dim, num_heads, dropout)
        self.dropout = Dropout(dropout)

    def blocks(self) -> tuple:
        """The four blocks in output order: appearance indep, appearance joint, motion indep, motion joint."""
        return (self.appearance_independent, self.appearance_joint, self.motion_independent, self.motion_joint)

    def forward(self, appearance, appearance_scores, motion, motion_scores):
        inputs = torch.stack([appearance, appearance, motion, motion])                      # (4, B, C, d)
        scores = torch.stack([appearance_scores, appearance_scores, motion_scores, motion_scores])
        return stacked_graph_attention(self.blocks(), inputs, scores, self.dropout).unbind(0)


class IndependentJointFusion(nn.Module):
    """``z = stack([joint, indep])``, ``beta = softmax_2(Linear(d,1,no bias)(tanh(Linear(d,d)(z))))``,
    ``F = sum beta * z``: (B, C, d) x 2 -> (B, C, d)."""

    def __init__(self, module_dim: int):
        super().__init__()
        self.proj = Linear(module_dim, module_dim)
        self.score = Linear(module_dim, 1, bias=False)

    def forward(self, independent: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack([joint, independent], dim=1)                       # (B, 2, C, d)
        beta = torch.softmax(self.score(torch.tanh(self.proj(stacked))), dim=1)  # (B, 2, C, 1)
        return (beta * stacked).sum(dim=1)


class UnitOutput(NamedTuple):
    """What one or more DualVGR units produce. Per-layer tuples hold one (B, C, d) per graph layer."""
    appearance: torch.Tensor            # (B, C, d)
    motion: torch.Tensor                # (B, C, d)
    indep_appearance: tuple
    joint_appearance: tuple
    indep_motion: tuple
    joint_motion: tuple


class DualVGRUnit(nn.Module):
    """One DualVGR unit with g graph layers.

    forward(V_a (B, C, d), V_m (B, C, d), Q_e (B, L, d), Q_w (B, L, w), mask (B, L)) -> UnitOutput with
    ``V + F`` (the residual) for each stream and the g per-layer independent/joint outputs.
    """

    def __init__(self, module_dim: int, word_dim: int, num_heads: int, graph_layers: int, gat_dropout: float):
        super().__init__()
        self.question_attention = QuestionAttention(module_dim)
        self.appearance_scores = ClipScores(word_dim, module_dim)
        self.motion_scores = ClipScores(word_dim, module_dim)
        self.graph_layers = nn.ModuleList(
            GraphLayer(module_dim, num_heads, gat_dropout) for _ in range(graph_layers))
        self.appearance_fusion = IndependentJointFusion(module_dim)
        self.motion_fusion = IndependentJointFusion(module_dim)

    def forward(self, appearance, motion, contextual, words, mask) -> UnitOutput:
        attended, _ = self.question_attention(contextual, words, mask)
        appearance_scores = self.appearance_scores(appearance, attended)
        motion_scores = self.motion_scores(motion, attended)
        graph_a, graph_m = appearance, motion
        layers = []
        for layer in self.graph_layers:
            indep_a, joint_a, indep_m, joint_m = layer(graph_a, appearance_scores, graph_m, motion_scores)
            layers.append((indep_a, joint_a, indep_m, joint_m))
            graph_a, graph_m = indep_a, indep_m
        indep_a, joint_a, indep_m, joint_m = layers[-1]
        indep_as, joint_as, indep_ms, joint_ms = zip(*layers)
        return UnitOutput(appearance + self.appearance_fusion(indep_a, joint_a),
                          motion + self.motion_fusion(indep_m, joint_m),
                          indep_as, joint_as, indep_ms, joint_ms)


class DualVGR(nn.Module):
    """u DualVGR units applied in sequence, each with its own weights.

    Graph layer j of unit i is entry ``i * g + j`` of the flattened per-layer tuples of the returned
    :class:`UnitOutput` (u * g entries each).
    """

    def __init__(self, module_dim: int, word_dim: int, num_heads: int, graph_layers: int, unit_layers: int,
                 gat_dropout: float):
        super().__init__()
        self.units = nn.ModuleList(
            DualVGRUnit(module_dim, word_dim, num_heads, graph_layers, gat_dropout) for _ in range(unit_layers))

    def forward(self, appearance, motion, contextual, words, mask) -> UnitOutput:
        per_layer = ([], [], [], [])
        for unit in self.units:
            result = unit(appearance, motion, contextual, words, mask)
            appearance, motion = result.appearance, result.motion
            for collected, new in zip(per_layer, result[2:]):
                collected.extend(new)
        return UnitOutput(appearance, motion, *(tuple(x) for x in per_layer))
