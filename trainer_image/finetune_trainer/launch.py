"""The container's entry point: turn the trainer config and the pod's environment into a `torchrun` command.

The image runs `python -m finetune_trainer.launch --config /etc/finetune/trainer-config.json`; this module execs
`torchrun … -m finetune_trainer --config …` in its place, so torchrun's agent is the container's main process and
its exit code is the pod's. Nodes and processes per node come from `spec.distributed`; a multi-node run uses a
static rendezvous that the operator's Indexed Job provides through the environment:

- `MASTER_ADDR`: a stable DNS name of node 0 (the headless Service's name for pod index 0),
- `MASTER_PORT`: the rendezvous port (default 29500),
- `JOB_COMPLETION_INDEX` (set by Kubernetes for Indexed Jobs) or `NODE_RANK`: this pod's node rank.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from finetune_operator.api.trainer import TrainerConfig

DEFAULT_CONFIG = Path("/etc/finetune/trainer-config.json")
DEFAULT_MASTER_PORT = "29500"


def processes_per_node(cfg: TrainerConfig, visible_gpus: int) -> int:
    """`distributed.processes_per_node`, else one process per visible GPU, else one."""
    return cfg.spec.distributed.processes_per_node or visible_gpus or 1


def build_torchrun_command(
    cfg: TrainerConfig, config_file: Path, env: Mapping[str, str], visible_gpus: int
) -> list[str]:
    """The torchrun argv for this pod (pure: the environment is passed in)."""
    nodes = cfg.spec.distributed.nodes
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={processes_per_node(cfg, visible_gpus)}",
    ]
    if nodes == 1:
        command.append("--standalone")
    else:
        rank = env.get("JOB_COMPLETION_INDEX") or env.get("NODE_RANK")
        if rank is None or "MASTER_ADDR" not in env:
            raise RuntimeError("multi-node runs need MASTER_ADDR and JOB_COMPLETION_INDEX (or NODE_RANK) set")
        command += [
            f"--nnodes={nodes}", f"--node-rank={rank}", f"--master-addr={env['MASTER_ADDR']}",
            f"--master-port={env.get('MASTER_PORT', DEFAULT_MASTER_PORT)}",
        ]  # fmt: skip
    return [*command, "-m", "finetune_trainer", "--config", str(config_file)]


def main(argv: list[str] | None = None) -> None:
    """Validate the config, then exec torchrun (does not return)."""
    parser = argparse.ArgumentParser(prog="finetune_trainer.launch", description=__doc__)
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="trainer config JSON (TrainerConfig)"
    )
    args = parser.parse_args(argv)
    try:
        cfg = TrainerConfig.model_validate_json(args.config.read_text())
    except Exception:  # let the trainer itself report the problem in the termination message
        os.execv(sys.executable, [sys.executable, "-m", "finetune_trainer", "--config", str(args.config)])
    import torch

    command = build_torchrun_command(cfg, args.config, os.environ, torch.cuda.device_count())
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
