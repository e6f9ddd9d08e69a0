"""The FLOP bound of a training step: its floating-point work counted from the shapes, and the device's peak
product speed in each dtype.

torch's ``FlopCounterMode`` counts matrix products (mm, bmm, addmm, baddbmm, convolutions, ...) by their shapes,
forward and backward, but not ``nn.LSTM`` (a single fused operator). :func:`count_step_flops` therefore runs one
step under ``FlopCounterMode`` with the CPU fast path off (so every product is a torch operator and every LSTM an
``nn.LSTM``) and adds each ``nn.LSTM`` call from its shapes, with forward hooks. Per direction, over M sequences of
T steps, input size I and hidden size H:

- forward: ``2 M T 4H (I + H)`` (input and recurrent products);
- backward, when its weights are trained: the same again for the weight gradients, ``2 M T 4H H`` for the
  gradient carried to the previous step's state, and ``2 M T 4H I`` for the gradient of the input only when the
  input needs one (the appearance features do not).

Element-wise work (activations, dropout, Adam) is not counted: it is bounded by memory traffic, not by the matrix
units. The bound of a step is its FLOPs divided by the device's peak product speed in the step's dtype
(:func:`peak_flops`, measured on one large product).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from model.cpu_ops import cpu_fast_path_enabled, linear, set_cpu_fast_path

PEAK_SHAPE = (2048, 2048, 2048)  # M, K, N of the product that measures the peak


@dataclass
class StepFlops:
    """FLOPs of one step: ``products`` counted by torch, ``lstms`` from the LSTM shapes (both forward + backward)."""
    products: int
    lstms: int

    @property
    def total(self) -> int:
        return self.products + self.lstms


def lstm_call_flops(lstm: nn.LSTM, x: torch.Tensor, backward: bool) -> int:
    """FLOPs of one ``nn.LSTM`` call on x ((M, T, I) batch-first or (T, M, I)), forward and, if ``backward``, its
    backward pass (see the module docstring)."""
    steps, rows = (x.shape[1], x.shape[0]) if lstm.batch_first else (x.shape[0], x.shape[1])
    hidden, dirs, total = lstm.hidden_size, 2 if lstm.bidirectional else 1, 0
    size = x.shape[-1]
    for layer in range(lstm.num_layers):
        gate_rows = 2 * rows * steps * 4 * hidden                        # 2 FLOPs per multiply-add
        forward = gate_rows * (size + hidden)
        total += dirs * forward
        if backward:
            needs_input_grad = x.requires_grad or layer > 0
            total += dirs * (forward + gate_rows * hidden + (gate_rows * size if needs_input_grad else 0))
        size = hidden * dirs
    return total


def count_step_flops(step, models) -> StepFlops:
    """Run ``step()`` (one training step) once and count its FLOPs; ``models``: the modules whose LSTMs it runs."""
    lstm_flops = [0]

    def hook(module, args, _output):
        trains = torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters())
        lstm_flops[0] += lstm_call_flops(module, args[0], backward=trains)

    handles = [m.register_forward_hook(hook) for model in models for m in model.modules() if isinstance(m, nn.LSTM)]
    was_enabled = cpu_fast_path_enabled()
    set_cpu_fast_path(False)
    try:
        with FlopCounterMode(display=False) as counter:
            step()
    finally:
        set_cpu_fast_path(was_enabled)
        for handle in handles:
            handle.remove()
    return StepFlops(products=counter.get_total_flops(), lstms=lstm_flops[0])


def peak_flops(device: torch.device, dtype: torch.dtype, repeats: int = 2) -> float:
    """FLOP/s of a ``PEAK_SHAPE`` product in ``dtype`` on ``device`` (best of ``repeats`` after one warm-up), by the
    operator the model's products use there: oneDNN for float32 on the CPU (model/cpu_ops.py), torch's otherwise."""
    m, k, n = PEAK_SHAPE
    g = torch.Generator().manual_seed(0)
    x = torch.randn(m, k, generator=g).to(device, dtype)
    w = torch.randn(n, k, generator=g).to(device, dtype)
    product = linear if dtype == torch.float32 else F.linear
    best = float("inf")
    with torch.no_grad():
        for i in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            product(x, w)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:
                best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best
