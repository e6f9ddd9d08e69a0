"""Where the features are held: on the run's GPU, in host RAM, or streamed from the HDF5 files
(``dataset.features_in_memory`` and ``dataset.feature_dtype``), decided from their size and the free memory."""
from __future__ import annotations

import math
import os

import torch

from training.data.features import VideoTable
from training.data.paths import DataError
from training.log import get_logger
from utils.memory import host_memory_available

FEATURE_MEMORY_SHARE = 0.5  # auto: in-memory features may take at most this share of the free memory


def features_bytes(table: VideoTable, dtype: torch.dtype) -> int:
    item = torch.tensor([], dtype=dtype).element_size()
    return item * len(table.video_ids) * (math.prod(table.appearance_shape[1:]) + math.prod(table.motion_shape[1:]))


def choose_feature_placement(mode, needed: int, run_device: torch.device, gpu_free: int | None,
                             host_available: int | None, processes_per_host: int = 1) -> torch.device | None:
    """Where the features go: a device to hold them in memory, or None to stream them from the HDF5 files.

    ``mode`` is ``dataset.features_in_memory``: ``"auto"`` holds them on the run's GPU if they take at most half its
    free memory, else in host RAM if they take at most half of what is available there (shared by the
    ``processes_per_host`` ranks of this machine, each holding its own copy), else streams them; ``True`` holds them
    in memory (GPU first, then host RAM if they fit in it at all) or raises DataError with the sizes; ``False``
    streams them. ``needed``, ``gpu_free`` and ``host_available`` are bytes (None: unknown).
    """
    if mode is False:
        return None
    if run_device.type == "cuda" and gpu_free is not None and needed <= FEATURE_MEMORY_SHARE * gpu_free:
        return run_device
    host_share = None if host_available is None else host_available / max(processes_per_host, 1)
    if mode == "auto":
        fits = host_share is not None and needed <= FEATURE_MEMORY_SHARE * host_share
        return torch.device("cpu") if fits else None
    if host_share is None or needed <= host_share:
        return torch.device("cpu")
    raise DataError(f"config key 'dataset.features_in_memory' is true, but the features need {_size_text(needed)} and "
                    f"this process has {_size_text(host_share)} of host RAM available"
                    + (f" ({_size_text(gpu_free)} free on {run_device}, of which it may take half)" if gpu_free else "")
                    + ": set it to auto or false to read them from the HDF5 files")


def _size_text(size: float) -> str:
    """``size`` bytes in the largest binary unit that keeps it >= 1: '20.0 GiB', '22.5 KiB'."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def _feature_dtype(cfg) -> torch.dtype:
    if cfg.dataset.feature_dtype not in ("float32", "float16"):
        raise DataError(f"config key 'dataset.feature_dtype' must be float32 or float16, got "
                        f"'{cfg.dataset.feature_dtype}'")
    return getattr(torch, cfg.dataset.feature_dtype)


def feature_placement(cfg, table: VideoTable, device: torch.device) -> tuple[torch.dtype, torch.device | None]:
    """(storage dtype, device holding the features in memory or None for HDF5 streaming), decided and logged."""
    dtype = _feature_dtype(cfg)
    mode = cfg.dataset.features_in_memory
    needed = features_bytes(table, dtype)
    gpu_free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" and mode is not False else None
    host = host_memory_available()
    placement = choose_feature_placement(mode, needed, device, gpu_free, host,
                                         int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    where = "HDF5 files (streamed)" if placement is None else f"{placement.type} memory"
    free = ", ".join(f"{name} {_size_text(size)}" for name, size in (("GPU free", gpu_free), ("host available", host))
                     if size is not None)
    get_logger().info(f"features: {where} (dataset.features_in_memory={str(mode).lower()}; "
                      f"{len(table.video_ids)} videos, {_size_text(needed)} as {cfg.dataset.feature_dtype}; {free})")
    return dtype, placement
