"""Multi-head graph attention over the clips of a video (ARCHITECTURE.md section 3.3).

The graph joins all C clips, self loops included. Per head ``h``:
``x_h = Linear(d, d/k)(dropout(x))``, ``e_ij = LeakyReLU_0.01(Linear(2d/k, 1)([x_h,i ; x_h,j]))``,
``att = dropout(softmax_j e)``, ``out_h = ELU(att @ (x_h * S))``; heads concatenated, then dropout.

The k heads are vectorised: their projections are stored stacked, ``head_weight (k, d/k, d)`` and
``head_bias (k, d/k)``, and applied as one matmul; the attention vectors as ``attn_weight (k, 2d/k)``
(first half scores ``x_i``, second half ``x_j``) and ``attn_bias (k,)``. The parameter count is exactly that of
k separate ``Linear(d, d/k)`` and ``Linear(2d/k, 1)``: ``k * ((d*d/k + d/k) + (2d/k + 1))``, and
:meth:`reset_parameters` initialises each head as those Linear layers would be (xavier-uniform with the
per-head fans, zero biases).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class GraphAttention(nn.Module):
    """One multi-head GAT block.

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
        self.dropout = nn.Dropout(dropout)
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
        b, c, d = x.shape
        k, hd = self.num_heads, self.head_dim
        h = F.linear(self.dropout(x), self.head_weight.reshape(d, d), self.head_bias.reshape(d))
        h = h.reshape(b, c, k, hd).transpose(1, 2)                          # (B, k, C, d/k)
        score_i = (h * self.attn_weight[:, None, :hd]).sum(-1)             # (B, k, C)
        score_j = (h * self.attn_weight[:, None, hd:]).sum(-1)             # (B, k, C)
        logits = score_i[..., :, None] + score_j[..., None, :] + self.attn_bias[:, None, None]  # (B, k, C, C)
        attention = self.dropout(torch.softmax(F.leaky_relu(logits, 0.01), dim=-1))
        out = F.elu(attention @ (h * scores[:, None]))                     # (B, k, C, d/k)
        return self.dropout(out.transpose(1, 2).reshape(b, c, d))
