"""Faster float32 CPU versions of the model's hot operators: the same functions, computed another way.

On the CPU, torch's defaults leave speed on the table for this model. Measured on a 2-core AMD EPYC (Zen 5),
torch 2.14, one thread, at the sizes of a teacher step (one 786,432-element GAT activation, a 256 x 768 x 768
product):

- ``F.linear`` / ``matmul`` call MKL's sgemm, which on AMD CPUs runs a generic code path at about half the speed
  of oneDNN's kernels (the ones ``nn.LSTM`` already uses): 2.65 ms against 1.25 ms. :func:`linear` and
  :func:`batched_linear` run the product, and the two products of its backward, through oneDNN
  (``torch.ops.mkldnn._linear_pointwise``, checked against ``F.linear`` when this module is imported).
- ``F.elu`` evaluates ``expm1`` one element at a time: 7.8 ms against 2.0 ms for :func:`elu`, which uses
  ``expm1(x) = 2 t / (1 - t)`` with ``t = tanh(x / 2)`` (no cancellation near 0) and torch's ELU backward.
- dropout draws its mask with ``bernoulli_``: 4-6 ms against 2.2 ms for :class:`Dropout`, which keeps an element
  where ``rand >= p`` (probability ``1 - p``, as before) and scales it by ``1 / (1 - p)``.

Everything else (CUDA, other dtypes, torch.compile, torch builds without the oneDNN operator) takes torch's own
operator, so a model's results depend on the device only through floating-point rounding. Values and gradients are
tested against torch's operators (tests/test_cpu_ops.py).

One switch turns the fast path off (after timm's ``use_fused_attn``): :func:`set_cpu_fast_path` (``True``,
``False`` or ``"auto"``), set from the config key ``model.cpu_fast_path`` by training and evaluation, or the
environment variable ``KDVQA_CPU_FAST_PATH`` (``auto`` | ``1`` | ``0``) read at import. ``auto`` means on where it
was measured to help: float32 dense CPU tensors (the only case the fast kernels cover anyway). Off, every function
here is exactly torch's operator.
"""
from __future__ import annotations

import os

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F


def _find_onednn_linear():
    """``torch.ops.mkldnn._linear_pointwise`` if this torch build has it and it computes ``F.linear``, else None
    (checked once on a small example: the operator is internal to torch and could change)."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        op = torch.ops.mkldnn._linear_pointwise
        g = torch.Generator().manual_seed(0)
        x, w, b = torch.randn(5, 3, generator=g), torch.randn(4, 3, generator=g), torch.randn(4, generator=g)
        y = torch.randn(5, 4, generator=g)
        ok = (torch.allclose(op(x, w, b, "none", [], ""), F.linear(x, w, b), rtol=1e-5, atol=1e-6)
              and torch.allclose(op(x.t(), y.t(), None, "none", [], ""), x.t() @ y, rtol=1e-5, atol=1e-6))
    except (AttributeError, RuntimeError, TypeError):
        return None
    return op if ok else None


_ONEDNN_LINEAR = _find_onednn_linear()
FAST_PATH_ENV = "KDVQA_CPU_FAST_PATH"
_SETTINGS = {"auto": True, "1": True, "true": True, "0": False, "false": False}


def _parse_setting(value, source: str) -> bool:
    """True / False / "auto" (or the env spellings auto, 1, 0, true, false) -> whether the fast path is on."""
    if isinstance(value, bool):
        return value
    key = str(value).strip().lower()
    if key not in _SETTINGS:
        raise ValueError(f"{source} must be auto, true or false, got {value!r}")
    return _SETTINGS[key]


_enabled = _parse_setting(os.environ.get(FAST_PATH_ENV, "auto"), f"environment variable {FAST_PATH_ENV}")


def set_cpu_fast_path(enabled) -> None:
    """Turn the fast float32 CPU operators on (True, or "auto": on for float32 CPU tensors) or off (False)."""
    global _enabled
    _enabled = _parse_setting(enabled, "model.cpu_fast_path")


def cpu_fast_path_enabled() -> bool:
    return _enabled


def fast_path_applies(*tensors, dtypes: tuple = (torch.float32,)) -> bool:
    """True when the switch is on, every tensor is a dense CPU tensor of one of ``dtypes`` (float32: the case the
    fast kernels cover) and torch.compile is not tracing (inductor generates its own CPU kernels, and lowers the
    oneDNN product for constant weights only)."""
    return _enabled and not torch.compiler.is_compiling() and all(
        t.device.type == "cpu" and t.dtype in dtypes and t.layout == torch.strided for t in tensors)


def _fast_product(*tensors) -> bool:
    """:func:`fast_path_applies` to a product's operands, and CPU autocast is off (under autocast the product is
    left to torch, which runs it in the autocast dtype)."""
    return fast_path_applies(*tensors) and not torch.is_autocast_enabled("cpu")


def _onednn_mm(a: torch.Tensor, b_t: torch.Tensor) -> torch.Tensor:
    """``a @ b_t.T`` for 2-D float32 tensors (transposed views welcome) through oneDNN. a (M, K), b_t (N, K) ->
    (M, N)."""
    return _ONEDNN_LINEAR(a, b_t, None, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """``x @ weight.T + bias`` with x (M, K), weight (N, K), bias (N,) or None; all three products in oneDNN."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _ONEDNN_LINEAR(x.contiguous(), weight.contiguous(), bias, "none", [], "")

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_mm(grad_out, weight.t())                      # (M, N) @ (N, K)
        if ctx.needs_input_grad[1]:
            grad_w = _onednn_mm(grad_out.t(), x.t())                       # (N, M) @ (M, K)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum(0)
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``: x (..., K), weight (N, K), bias (N,) or None -> (..., N); oneDNN on float32 CPU tensors."""
    tensors = (x, weight) if bias is None else (x, weight, bias)
    if _ONEDNN_LINEAR is None or not _fast_product(*tensors) or x.numel() == 0:
        return F.linear(x, weight, bias)
    out = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), weight, bias)
    return out.reshape(*x.shape[:-1], weight.shape[0])


def batched_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Independent linear maps: x (n, M, K), weight (n, N, K), bias (n, N) -> (n, M, N), ``x[i] @ weight[i].T +
    bias[i]``."""
    if _ONEDNN_LINEAR is None or not _fast_product(x, weight, bias) or x.numel() == 0:
        return torch.baddbmm(bias[:, None, :], x, weight.transpose(1, 2))
    return torch.stack([_OneDNNLinear.apply(*block) for block in zip(x.unbind(0), weight.unbind(0), bias.unbind(0))])


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same initialisation) whose float32 CPU forward runs through oneDNN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class _TanhELU(torch.autograd.Function):
    """ELU (alpha 1) with ``expm1`` through ``tanh``; backward ``grad * (1 if x > 0 else exp(x))`` (torch's own
    ELU backward, which is vectorised)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        t = x.clamp(max=0).mul_(0.5).tanh_()
        one_minus_t = torch.rsub(t, 1)
        expm1 = t.mul_(2).div_(one_minus_t)           # expm1(min(x, 0)) = 2t / (1 - t)
        return torch.maximum(x, expm1)                # expm1(x) >= x: ELU = max(x, expm1(min(x, 0)))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return torch.ops.aten.elu_backward(grad_out, 1.0, 1.0, 1.0, False, x)


def elu(x: torch.Tensor) -> torch.Tensor:
    """``F.elu(x)`` (alpha 1); through ``tanh`` on float32 CPU tensors."""
    if not fast_path_applies(x):
        return F.elu(x)
    return _TanhELU.apply(x)


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose float32 and bf16 (CPU autocast outputs) CPU mask comes from float32 ``rand >= p`` (keep
    probability ``1 - p``) instead of ``bernoulli_``; output ``x * mask / (1 - p)`` in train mode, ``x`` in eval
    mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not self.training or self.p == 0 or self.inplace
                or not fast_path_applies(x, dtypes=(torch.float32, torch.bfloat16))):
            return super().forward(x)
        if self.p == 1:
            return x * 0
        keep = (torch.rand_like(x, dtype=torch.float32) >= self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * keep
