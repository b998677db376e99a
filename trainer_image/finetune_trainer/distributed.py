"""Process-group setup and the rank helpers every other module uses to decide who logs and who saves.

Called first by the recipe. Under `torchrun` the environment carries RANK, LOCAL_RANK and WORLD_SIZE (and, for
multi-node runs, the rendezvous that torchrun resolved); a plain `python -m finetune_trainer` is a world of one.
CPU runs use gloo, GPU runs NCCL. DeepSpeed runs go through `deepspeed.init_distributed` so its communication
layer and torch's share one process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int
    local_rank: int
    size: int

    @property
    def device(self) -> torch.device:
        """The GPU this process owns, or the CPU."""
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def init_world(use_deepspeed: bool) -> World:
    """Join the process group that torchrun set up (no-op for a single process)."""
    world = World(
        rank=int(os.environ.get("RANK", "0")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        size=int(os.environ.get("WORLD_SIZE", "1")),
    )
    if world.device.type == "cuda":
        torch.cuda.set_device(world.device)
    backend = "nccl" if world.device.type == "cuda" else "gloo"
    if use_deepspeed:
        import deepspeed

        deepspeed.init_distributed(dist_backend=backend)
    elif world.size > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return world


def is_rank_zero() -> bool:
    """True in the one process that logs, serves metrics and writes shared files."""
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for all ranks (no-op for a single process)."""
    if dist.is_initialized():
        dist.barrier()


def mean_over_ranks(value: float) -> float:
    """The mean of `value` across ranks."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    tensor = torch.tensor(
        [value], dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu"
    )
    dist.all_reduce(tensor)
    return float(tensor.item()) / int(dist.get_world_size())


def shutdown() -> None:
    """Leave the process group."""
    if dist.is_initialized():
        dist.destroy_process_group()
