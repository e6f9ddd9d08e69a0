"""The attention weights a DualVGR model computes, read at predict time (predict.py --explain).

Nothing here runs in a normal forward: :func:`record_attention` registers forward hooks for the duration of a
``with`` block and removes them afterwards. The hooks read what the modules return or recompute, from the inputs
the modules received, the weights the forward pass used (:meth:`ClipReadout.weights`,
:func:`model.gat.stacked_attention_weights`); with dropout off (eval mode, required) they are exactly those weights.

For B questions, L question tokens, C clips, u units of g graph layers, k heads:

- ``question`` (u, B, L): each unit's question-word attention ``a`` (docs/model.md section 3.1), a softmax over
  the valid words (renormalised ``a / (sum + 1e-5)``, so it sums to 1 - 1e-5), 0 beyond a question's length;
- ``clip_scores`` (u, 2, B, C): each unit's clip relevance ``S = sigmoid(...)`` for appearance (0) and motion (1);
  independent sigmoids, not a distribution;
- ``graph`` (u * g, 4, B, k, C, C): per graph layer (layer j of unit i at ``i * g + j``) the attention of its four
  GAT blocks (:data:`GRAPH_BLOCKS` order), row i of a head's C x C matrix the softmax over the clips j that clip
  i aggregates;
- ``readout`` (B, C): the readout's softmax over the fused clips (multiple choice: the question's readout).

:meth:`AttentionMaps.graph_over_clips` reduces each block to one distribution over clips: the mean over heads and
over query clips of the attention rows (a mean of distributions, so it sums to 1): how much each clip is attended to.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from model.dualvgr import ClipScores, GraphLayer, QuestionAttention
from model.fusion import ClipReadout, ConditionedReadout
from model.gat import stacked_attention_weights

GRAPH_BLOCKS = ("appearance independent", "appearance joint", "motion independent", "motion joint")


@dataclass
class AttentionMaps:
    """The attention of one forward pass (shapes in the module docstring); float32 CPU tensors."""
    question: torch.Tensor
    clip_scores: torch.Tensor
    graph: torch.Tensor
    readout: torch.Tensor

    def graph_over_clips(self) -> torch.Tensor:
        """(u * g, 4, B, C): each block's attention rows averaged over heads and query clips (sums to 1)."""
        return self.graph.mean(dim=(3, 4))

    def select(self, b: int) -> "AttentionMaps":
        """Question ``b`` alone (the batch dimension kept, of size 1)."""
        return AttentionMaps(self.question[:, b:b + 1], self.clip_scores[:, :, b:b + 1], self.graph[:, :, b:b + 1],
                             self.readout[b:b + 1])


class _Recorder:
    """Collects what the hooks see during one forward pass, in call order."""

    def __init__(self):
        self.question, self.scores, self.graph, self.readout = [], [], [], []

    def maps(self) -> AttentionMaps:
        if not self.graph or not self.readout:
            raise RuntimeError("no forward pass ran inside record_attention()")
        scores = torch.stack(self.scores).float().cpu()                          # (2u, B, C, 1), a then m per unit
        return AttentionMaps(question=torch.stack(self.question).float().cpu(),
                             clip_scores=scores[..., 0].unflatten(0, (-1, 2)),
                             graph=torch.stack(self.graph).float().cpu(),
                             readout=self.readout[0][..., 0].float().cpu())


@contextmanager
def record_attention(model: nn.Module) -> Iterator[_Recorder]:
    """``with record_attention(model) as rec: model(...)``, then ``rec.maps()`` -> :class:`AttentionMaps`.

    The model must be in eval mode (dropout off: then the recomputed weights are the ones the forward used) and run
    one forward pass inside the block. The hooks are removed on leaving it.
    """
    if model.training:
        raise ValueError("record_attention needs the model in eval mode (model.eval()): dropout changes the weights")
    recorder = _Recorder()

    def on_question(module, inputs, output):
        recorder.question.append(output[1].detach())

    def on_scores(module, inputs, output):
        recorder.scores.append(output.detach())

    def on_graph(module, inputs, output):
        appearance, _, motion, _ = inputs
        x = torch.stack([appearance, appearance, motion, motion])
        recorder.graph.append(stacked_attention_weights(module.blocks(), x).detach())

    def on_readout(module, inputs, output):
        recorder.readout.append(module.weights(*inputs).detach())

    handlers = ((QuestionAttention, on_question), (ClipScores, on_scores), (GraphLayer, on_graph),
                (ClipReadout, on_readout), (ConditionedReadout, on_readout))
    handles = [module.register_forward_hook(hook) for module in model.modules()
               for kind, hook in handlers if type(module) is kind]
    try:
        yield recorder
    finally:
        for handle in handles:
            handle.remove()
