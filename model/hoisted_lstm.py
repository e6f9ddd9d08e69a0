"""A bidirectional LSTM's final states with the input projection hoisted out of the recurrence (CPU bf16 path).

An LSTM over T steps computes, per direction, ``z_t = W_ih x_t + b_ih + b_hh + W_hh h_{t-1}`` (gates i, f, g, o in
torch's row order), ``c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)``, ``h_t = sigmoid(o) * tanh(c_t)``, from
``h_0 = c_0 = 0``. Most of its work is the input term ``W_ih x_t``, which does not depend on the recurrence: here
it is one matrix product over every step of every sequence and both directions (``(N*T, D) @ (D, 8H)``), in bf16
on the matrix units under CPU autocast, and only the small ``W_hh h_{t-1}`` product stays inside the time loop.
This is also faster in float32 than ``nn.LSTM``'s oneDNN kernels (whose backward pass also computes the gradient of
the input, which the appearance features do not need), so the CPU fast path (model/cpu_ops.py) takes it for
both dtypes.

:func:`bilstm_final_states` returns what ``nn.LSTM(bidirectional=True)`` returns as ``h_n`` (the forward
direction's state after the last step, the backward direction's after the first), from the module's own float32
parameters (the master weights: the products read bf16 copies, the gradients land in float32). The recurrence
runs both directions at once as a batch of two; its gate non-linearities and cell state stay float32, and its
backward pass is written out (:class:`_Recurrence`) so that the weight gradient of ``W_hh`` is one product over all
steps instead of one per step.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from model.cpu_ops import linear


class _Recurrence(torch.autograd.Function):
    """Final hidden states of S independent LSTM directions from their input pre-activations.

    forward(pre (T, S, M, 4H) = ``W_ih x_t + b`` per step (direction s reads its own step order), w_hh (S, 4H, H))
    -> h_T (S, M, H) float32. The ``W_hh h`` products run in ``w_hh``'s dtype (bf16 on the fast path); gates, cell
    state and the returned states are float32. Backward returns the gradients of ``pre`` (in its dtype) and
    ``w_hh`` (float32 accumulated, returned in its dtype).
    """

    @staticmethod
    def forward(ctx, pre: torch.Tensor, w_hh: torch.Tensor) -> torch.Tensor:
        steps, dirs, rows, four_h = pre.shape
        hidden = four_h // 4
        w_t = w_hh.transpose(1, 2)                                          # (S, H, 4H)
        gates = pre.new_empty((steps, dirs, rows, four_h), dtype=torch.float32)  # i, f, g, o activations
        cells = pre.new_zeros((steps + 1, dirs, rows, hidden), dtype=torch.float32)
        tanh_cells = pre.new_empty((steps, dirs, rows, hidden), dtype=torch.float32)
        states = pre.new_zeros((steps + 1, dirs, rows, hidden), dtype=w_hh.dtype)  # h_0 .. h_T, product dtype
        h = None
        for t in range(steps):
            if t:
                z = torch.bmm(states[t], w_t).float().add_(pre[t])
            else:
                z = pre[0].to(torch.float32, copy=True)
            act = gates[t]
            torch.sigmoid(z, out=act)
            act[..., 2 * hidden:3 * hidden] = torch.tanh(z[..., 2 * hidden:3 * hidden])
            i, f, g, o = act.split(hidden, dim=-1)
            c = cells[t + 1]
            torch.mul(f, cells[t], out=c)
            c.addcmul_(i, g)
            torch.tanh(c, out=tanh_cells[t])
            h = o * tanh_cells[t]
            states[t + 1].copy_(h)
        ctx.save_for_backward(gates, cells, tanh_cells, states, w_hh)
        ctx.pre_dtype = pre.dtype
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: torch.Tensor):
        gates, cells, tanh_cells, states, w_hh = ctx.saved_tensors
        steps, dirs, rows, four_h = gates.shape
        hidden = four_h // 4
        grad_pre = torch.empty((steps, dirs, rows, four_h), dtype=w_hh.dtype, device=gates.device)
        dh = grad_h.float()
        dc = torch.zeros_like(dh)
        da = torch.empty((dirs, rows, four_h), dtype=torch.float32, device=gates.device)  # d(activation)
        for t in reversed(range(steps)):
            act, tc = gates[t], tanh_cells[t]
            i, f, g, o = act.split(hidden, dim=-1)
            dc.addcmul_(dh * o, 1 - tc * tc)                                # through h_t = o * tanh(c_t)
            da_i, da_f, da_g, da_o = da.split(hidden, dim=-1)
            torch.mul(dc, g, out=da_i)
            torch.mul(dc, cells[t], out=da_f)
            torch.mul(dc, i, out=da_g)
            torch.mul(dh, tc, out=da_o)
            dz = da * act * (1 - act)                                       # sigmoid' on i, f, o
            dz[..., 2 * hidden:3 * hidden] = da_g * (1 - g * g)             # tanh' on g
            grad_pre[t].copy_(dz)
            dc.mul_(f)
            if t:
                dh = torch.bmm(grad_pre[t], w_hh).float()                   # (S, M, 4H) @ (S, 4H, H)
        # dW_hh = sum_t dz_t^T h_{t-1}: one product over all steps (h_0 = 0 adds nothing)
        dz_all = grad_pre[1:].permute(1, 3, 0, 2).reshape(dirs, four_h, (steps - 1) * rows)
        h_all = states[1:steps].permute(1, 0, 2, 3).reshape(dirs, (steps - 1) * rows, hidden)
        grad_w = torch.bmm(dz_all, h_all).to(w_hh.dtype)
        return grad_pre.to(ctx.pre_dtype), grad_w


def bilstm_final_states(lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """``lstm(x)[1][0]`` of a single-layer bidirectional batch-first ``nn.LSTM`` with biases, with the input
    projection hoisted out of the recurrence; products in bf16 under CPU autocast (the autocast dtype), else in
    float32 through oneDNN (model/cpu_ops.py).

    x (M, T, D) float32 -> h_n (2, M, H) float32: [forward direction after step T ; backward direction after step 1].
    """
    rows, steps, _ = x.shape
    hidden = lstm.hidden_size
    compute = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32
    w_ih = torch.cat([lstm.weight_ih_l0, lstm.weight_ih_l0_reverse])      # (8H, D) float32 master weights
    bias = torch.cat([lstm.bias_ih_l0 + lstm.bias_hh_l0, lstm.bias_ih_l0_reverse + lstm.bias_hh_l0_reverse])
    w_hh = torch.stack([lstm.weight_hh_l0, lstm.weight_hh_l0_reverse]).to(compute)  # (2, 4H, H)
    with torch.autocast("cpu", enabled=False):
        if compute == torch.float32:
            pre = linear(x, w_ih, bias)                                     # (M, T, 8H)
        else:
            pre = F.linear(x.to(compute), w_ih.to(compute), bias.to(compute))
        pre = pre.view(rows, steps, 2, 4 * hidden)
        # time-major, directions stacked; the backward direction reads the steps in reverse
        pre = torch.stack([pre[:, :, 0], pre[:, :, 1].flip(1)]).permute(2, 0, 1, 3)  # (T, 2, M, 4H)
        return _Recurrence.apply(pre, w_hh)
