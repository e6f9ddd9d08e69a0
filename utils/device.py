"""Device selection shared by every entry point (config key ``device`` / ``--device``)."""
from __future__ import annotations

import torch


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` -> ``cuda:<local_rank>`` (torchrun); ``cpu`` / ``cuda:N`` kept.

    Raises ValueError naming the device when CUDA is asked for but not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device '{name}' is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device '{name}' was asked for but CUDA is not available here; use cpu or auto")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device
