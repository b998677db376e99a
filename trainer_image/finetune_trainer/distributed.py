"""Process-group setup and the rank helpers every other module uses to decide who logs and who saves.

Called first by the recipe. Under `torchrun` the environment carries RANK, LOCAL_RANK and WORLD_SIZE (and, for
multi-node runs, the rendezvous that torchrun resolved); a plain `python -m finetune_trainer` is a world of one.
CPU runs use gloo, GPU runs NCCL. DeepSpeed runs go through `deepspeed.init_distributed` so its communication
layer and torch's share one process group. `StopSignal` records SIGTERM so that the loop can stop between steps,
and `any_rank` makes every rank agree to stop at the same step.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

import numpy as np
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


def _all_reduce(value: float, op: Any) -> float:
    tensor = torch.tensor(
        [value], dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu"
    )
    dist.all_reduce(tensor, op=op)
    return float(tensor.item())


def mean_over_ranks(value: float) -> float:
    """The mean of `value` across ranks."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    return _all_reduce(value, dist.ReduceOp.SUM) / int(dist.get_world_size())


def gather_objects(value: Any) -> list[Any]:
    """`value` of every rank, in rank order (picklable objects; a collective: all ranks must call it)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one (a collective: all ranks must call it)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return flag
    return _all_reduce(float(flag), dist.ReduceOp.MAX) > 0


class StopSignal:
    """Records SIGTERM (pod deletion on suspend, preemption, node drain) while the run is in this context.

    Kubernetes sends SIGTERM to the container's main process, torchrun's agent, which forwards it to every worker
    and waits for them; the loop polls `requested` between optimizer steps and stops after a checkpoint. The
    handler is installed only in the main thread (Python allows no other) and the previous one is restored on exit.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def shutdown() -> None:
    """Leave the process group."""
    if dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (every rank the same: the data order is shared)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
