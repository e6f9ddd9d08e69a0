"""The one parameter counter: every report of a model's size (model.summary, the trainer's start line, evaluation
results, the distillation size check, the train-step benchmark) counts with :func:`count_parameters`."""
from __future__ import annotations


def count_parameters(module, trainable_only: bool = True) -> int:
    """Number of parameter elements of ``module`` (a ``torch.nn.Module``): only those with ``requires_grad`` by
    default, every parameter (frozen ones too) with ``trainable_only=False``. Buffers are never counted."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
