"""Multi-head graph attention over the clips of a video (docs/model.md section 3.3).

The graph joins all C clips, self loops included. Per head ``h``:
``x_h = Linear(d, d/k)(dropout(x))``, ``e_ij = LeakyReLU_0.01(Linear(2d/k, 1)([x_h,i ; x_h,j]))``,
``att = dropout(softmax_j e)``, ``out_h = ELU(att @ (x_h * S))``; heads concatenated, then dropout.

The k heads are vectorised: their projections are stored stacked, ``head_weight (k, d/k, d)`` and
``head_bias (k, d/k)``, and applied as one product (:func:`model.cpu_ops.batched_linear`, oneDNN on the CPU);
the attention vectors as ``attn_weight (k, 2d/k)`` (first half scores ``x_i``, second half ``x_j``) and
``attn_bias (k,)``. The parameter count is exactly that of
k separate ``Linear(d, d/k)`` and ``Linear(2d/k, 1)``: ``k * ((d*d/k + d/k) + (2d/k + 1))``, and
:meth:`GraphAttention.reset_parameters` initialises each head as those Linear layers would be (xavier-uniform
with the per-head fans, zero biases).

:func:`graph_attention` also takes leading "block" dimensions, so that a graph layer runs its four blocks (each
with its own weights) as one batched computation: on a GPU the model is bound by kernel launches, not FLOPs.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from model.cpu_ops import Dropout, batched_linear, elu


def project_heads(x: torch.Tensor, head_weight: torch.Tensor, head_bias: torch.Tensor) -> torch.Tensor:
    """Per-head node projections: x ``(*, B, C, d)`` -> ``(*, B, k, C, d/k)`` (weights as in :func:`graph_attention`)."""
    *lead, b, c, d = x.shape
    k, hd = head_weight.shape[-3], head_weight.shape[-2]
    blocks = math.prod(lead)
    h = batched_linear(x.reshape(blocks, b * c, d), head_weight.reshape(blocks, d, d),
                       head_bias.reshape(blocks, d))                             # (blocks, B*C, d), heads in order
    return h.reshape(*lead, b, c, k, hd).transpose(-3, -2)


def attention_weights(h: torch.Tensor, attn_weight: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
    """``softmax_j LeakyReLU_0.01(e_ij)`` before dropout: h ``(*, B, k, C, d/k)`` -> ``(*, B, k, C, C)``, each row
    (query clip i) a distribution over the clips j it aggregates."""
    *lead, _, k, _, hd = h.shape
    attn = attn_weight.reshape(*lead, k, 2, hd).transpose(-1, -2)[..., None, :, :, :]  # (*, 1, k, d/k, 2)
    node_scores = h @ attn                                                       # (*, B, k, C, 2)
    logits = (node_scores[..., :, None, 0] + node_scores[..., None, :, 1]
              + attn_bias[..., None, :, None, None])                             # (*, B, k, C, C)
    return torch.softmax(F.leaky_relu(logits, 0.01), dim=-1)


def graph_attention(x: torch.Tensor, scores: torch.Tensor, head_weight: torch.Tensor, head_bias: torch.Tensor,
                    attn_weight: torch.Tensor, attn_bias: torch.Tensor, dropout: nn.Module) -> torch.Tensor:
    """Multi-head GAT over fully connected clips, for one block or a stack of blocks.

    With ``*`` any leading block dimensions (none for one block), shapes are: x ``(*, B, C, d)``,
    scores ``(*, B, C, 1)``, head_weight ``(*, k, d/k, d)``, head_bias ``(*, k, d/k)``,
    attn_weight ``(*, k, 2d/k)``, attn_bias ``(*, k)``; returns ``(*, B, C, d)``. ``dropout`` is applied to the
    input, the attention and the output, with independent masks everywhere.
    """
    *lead, b, c, d = x.shape
    h = project_heads(dropout(x), head_weight, head_bias)                       # (*, B, k, C, d/k)
    attention = dropout(attention_weights(h, attn_weight, attn_bias))           # (*, B, k, C, C)
    out = elu(attention @ (h * scores[..., None, :, :]))                       # (*, B, k, C, d/k)
    return dropout(out.transpose(-3, -2).reshape(*lead, b, c, d))


class GraphAttention(nn.Module):
    """One multi-head GAT block with its own weights.

    forward(x (B, C, d), scores (B, C, 1)) -> (B, C, d). ``scores`` scales every node's projected feature
    (broadcast over the head width) before aggregation.
    """

    def __init__(self, module_dim: int, num_heads: int, dropout: float):
        super().__init__()
        if module_dim % num_heads:
            raise ValueError(f"model.module_dim ({module_dim}) must be divisible by model.num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = module_dim // num_heads
        self.head_weight = nn.Parameter(torch.empty(num_heads, self.head_dim, module_dim))
        self.head_bias = nn.Parameter(torch.empty(num_heads, self.head_dim))
        self.attn_weight = nn.Parameter(torch.empty(num_heads, 2 * self.head_dim))
        self.attn_bias = nn.Parameter(torch.empty(num_heads))
        self.dropout = Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform per head (as k ``Linear(d, d/k)`` and k ``Linear(2d/k, 1)``), zero biases."""
        module_dim = self.num_heads * self.head_dim
        bound = math.sqrt(6.0 / (module_dim + self.head_dim))
        nn.init.uniform_(self.head_weight, -bound, bound)
        bound = math.sqrt(6.0 / (2 * self.head_dim + 1))
        nn.init.uniform_(self.attn_weight, -bound, bound)
        nn.init.zeros_(self.head_bias)
        nn.init.zeros_(self.attn_bias)

    def forward(self, x: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return graph_attention(x, scores, self.head_weight, self.head_bias, self.attn_weight, self.attn_bias,
                               self.dropout)


def stacked_parameters(blocks) -> list[torch.Tensor]:
    """head_weight, head_bias, attn_weight, attn_bias of n equal-sized :class:`GraphAttention` blocks, each stacked
    along a new first dimension of size n."""
    return [torch.stack([getattr(block, name) for block in blocks])
            for name in ("head_weight", "head_bias", "attn_weight", "attn_bias")]


def stacked_graph_attention(blocks, x: torch.Tensor, scores: torch.Tensor, dropout: nn.Module) -> torch.Tensor:
    """Run several GAT blocks at once: block n reads ``x[n] (B, C, d)`` and ``scores[n] (B, C, 1)``.

    blocks: a sequence of n :class:`GraphAttention` with equal sizes; x ``(n, B, C, d)``, scores
    ``(n, B, C, 1)`` -> ``(n, B, C, d)``. Same result as calling each block on its slice.
    """
    return graph_attention(x, scores, *stacked_parameters(blocks), dropout)


def stacked_attention_weights(blocks, x: torch.Tensor) -> torch.Tensor:
    """The attention (before dropout) of several GAT blocks: x ``(n, B, C, d)`` -> ``(n, B, k, C, C)``, what
    :func:`stacked_graph_attention` aggregates with when dropout is off (eval mode)."""
    head_weight, head_bias, attn_weight, attn_bias = stacked_parameters(blocks)
    return attention_weights(project_heads(x, head_weight, head_bias), attn_weight, attn_bias)
