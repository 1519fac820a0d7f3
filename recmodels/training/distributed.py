"""Data-parallel training across processes (torchrun): which process this is, and the few collectives that
keep every process's numbers equal to one process training the same global batch.

Launched by ``torchrun --nproc_per_node N``, every process reads RANK, WORLD_SIZE and LOCAL_RANK from its
environment; ``init_from_env`` joins them into one process group (gloo on CPU, NCCL on CUDA). Without
torchrun nothing here starts a group and every helper is the single-process identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

BatchT = TypeVar("BatchT", bound=tuple)  # a NamedTuple of (B, ...) tensors


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The process that writes checkpoints, logs and reports (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_from_env(device: str = "auto") -> Ranks:
    """Join the process group torchrun set up (a no-op without torchrun); CUDA processes get their own GPU."""
    if not launched_by_torchrun() or dist.is_initialized():
        return current()
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return current()


def current() -> Ranks:
    if not dist.is_initialized():
        return Ranks()
    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (nothing to wait for in one process)."""
    if dist.is_initialized():
        dist.barrier()


def all_sum(value: float, device: torch.device) -> float:
    """The sum of ``value`` over all processes (the value itself in one process)."""
    if not dist.is_initialized():
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item())


def shard_rows(batch: BatchT, ranks: Ranks) -> BatchT:
    """This process's rows of a global batch (a NamedTuple of tensors; None fields stay None): every
    ``world_size``-th row from ``rank`` on."""
    if not ranks.distributed:
        return batch
    return type(batch)(*(None if part is None else part[ranks.rank :: ranks.world_size] for part in batch))
