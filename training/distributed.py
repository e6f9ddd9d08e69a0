"""Process group set-up for single-process and torchrun (DistributedDataParallel) runs, and small collectives.

Under ``torchrun`` the environment holds RANK, LOCAL_RANK and WORLD_SIZE; each process then drives the GPU
``cuda:LOCAL_RANK`` with NCCL, or the CPU with gloo. Without those variables everything is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from utils.config import ConfigError
from utils.device import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process runs: ``rank`` of ``world_size`` processes, on ``device``."""
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def setup(device_name: str) -> DistContext:
    """Initialise the process group when launched by torchrun and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    try:
        device = resolve_device(device_name, local_rank)
    except ValueError as e:
        raise ConfigError(f"config key 'device' (--device): {e}") from None
    if world_size > 1 and device.type == "cuda" and device.index != local_rank:
        device = torch.device("cuda", local_rank)  # one GPU per process under torchrun
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kwargs)
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.is_distributed:
        dist.barrier()


def all_reduce_(tensor: torch.Tensor, ctx: DistContext, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``sum`` / ``max`` / ``min``) across ranks; returns ``tensor``. No-op on one process."""
    if ctx.is_distributed:
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        dist.all_reduce(tensor, op=ops[op])
    return tensor


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank if it is True on any rank."""
    if not ctx.is_distributed:
        return flag
    value = torch.tensor([float(flag)], device=ctx.device)
    return bool(all_reduce_(value, ctx, "max").item())


def broadcast_buffers_(module: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank, in place. No-op on one process.

    DDP synchronises buffers at the start of each training forward, then every rank updates its BatchNorm statistics
    with its own batch: without this, ranks would evaluate (and rank 0 would save) different statistics.
    """
    if ctx.is_distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
