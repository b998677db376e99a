"""Resumable checkpoints: written every `training.checkpoint_steps`, restored from the newest complete one.

Called by the recipe's loop (`save`) and its `setup` (`restore`). A checkpoint is a folder
`checkpoint-<step>` holding the engine's state (trainable weights, optimizer, scheduler; DeepSpeed shards under
ZeRO), every rank's random-number-generator state, `state.json` with the step and data position, and the run's
identity (`ownership.py`: only the run it belongs to may resume it). It is written
as `checkpoint-<step>.partial` and renamed only after every rank has finished, so a run killed mid-save leaves a
`.partial` folder that `restore` ignores: "complete" means "renamed". With the data order a pure function of the
step (see `recipe._batches`), restoring the step, weights, optimizer and RNG continues the loss curve exactly.
"""

from __future__ import annotations

import json
import pickle
import random
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from finetune_trainer import ownership
from finetune_trainer.distributed import World, barrier, is_rank_zero

if TYPE_CHECKING:
    from finetune_trainer.engine import Engine

KEEP = 2
"""Complete checkpoints kept; older ones are deleted after a new one is complete."""

_NAME = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class Position:
    """Where training stands: optimizer steps done and the data position they imply."""

    step: int
    epoch: int
    micro_batch: int
    """Micro-batches of `epoch` already consumed."""
    tokens: int
    """Tokens trained on so far, on all ranks."""


def _rng_state() -> dict[str, Any]:
    """Every generator's state in types `torch.load(weights_only=True)` reads (numpy's key as a tensor)."""
    _, key, pos, has_gauss, cached = cast(
        tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True)
    )
    return {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }  # fmt: skip


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    legacy = state["numpy"]
    key = legacy["key"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", key, legacy["pos"], legacy["has_gauss"], legacy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def save(
    engine: Engine, position: Position, root: Path, world: World, identity: ownership.RunIdentity
) -> Path:
    """Write a checkpoint for `position`, owned by `identity` (all ranks call this), and return its folder."""
    final = root / f"checkpoint-{position.step}"
    partial = final.with_name(final.name + ".partial")
    if is_rank_zero():
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    barrier()
    engine.save_state(partial)
    torch.save(_rng_state(), partial / f"rng-{world.rank}.pt")
    barrier()
    if is_rank_zero():
        (partial / "state.json").write_text(json.dumps(asdict(position)))
        ownership.write(identity, partial)
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        for old in complete_checkpoints(root)[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint file holds more than tensors and plain values: loading it could run code, so it is not loaded."""


def load_tensors(path: Path, map_location: Any = None) -> Any:
    """`torch.load` that never unpickles code (`weights_only=True`): a crafted file in a reused output volume is
    refused with UnsafeCheckpointError instead of run."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"checkpoint file {path} holds more than tensors and plain values (crafted, or written by an older "
            "trainer); not loaded, since loading it could run code. Delete the checkpoints folder to start over"
        ) from exc


def restore(engine: Engine, root: Path, world: World) -> Position | None:
    """Load the newest complete checkpoint under `root` into `engine` and the RNGs; None when there is none."""
    found = complete_checkpoints(root)
    if not found:
        return None
    latest = found[-1]
    engine.load_state(latest)
    rng = latest / f"rng-{world.rank}.pt"
    if rng.exists():  # a run restarted with more processes than it saved with starts the new ranks fresh
        _set_rng_state(load_tensors(rng))
    return Position(**json.loads((latest / "state.json").read_text()))
