"""Host-to-device copies of batch tensors that never wait for the device."""
from __future__ import annotations

import torch


def to_device_async(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to ``device`` without a host sync: a copy from pageable host memory to a GPU would synchronise the
    stream, so CPU tensors are staged in pinned memory first (PyTorch's caching host allocator)."""
    if device.type == "cuda" and tensor.device.type == "cpu" and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def batch_to_device(batch: dict, device: torch.device) -> dict:
    return {k: to_device_async(v, device) for k, v in batch.items()}
