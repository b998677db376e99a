"""The container's entry point: turn the trainer config and the pod's environment into a torchrun run.

The image runs `python -m finetune_trainer.launch --config /etc/finetune/trainer-config.json`; this module runs
torchrun's agent in its own process (the container's main process) with `-m finetune_trainer --config …` as the
workers. Nodes and processes per node come from `spec.distributed`; a multi-node run uses a static rendezvous that
the operator's Indexed Job provides through the environment (names in `finetune_api.trainer`):

- `MASTER_ADDR`: a stable DNS name of node 0 (the headless Service's name for pod index 0),
- `MASTER_PORT`: the rendezvous port (default 29500),
- `JOB_COMPLETION_INDEX` (set by Kubernetes for Indexed Jobs) or `NODE_RANK`: this pod's node rank.

The pod's exit code is the trainer's (`ExitCode`), not torchrun's generic 1: the first failed worker's code (2 for an
invalid config or dataset, 128 + N for a worker killed by signal N), and `INTERRUPTED` (143) after SIGTERM, which
the agent forwards to every worker and then waits for their checkpoint. It waits as long as the pod lets it: the
pod's terminationGracePeriodSeconds is the only deadline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from finetune_api.trainer import (
    CONFIG_PATH,
    DEFAULT_MASTER_PORT,
    ENV_MASTER_ADDR,
    ENV_MASTER_PORT,
    ENV_NODE_RANK,
    ENV_NODE_RANK_FALLBACK,
    ExitCode,
    TrainerConfig,
)

SHUTDOWN_TIMEOUT_S = 24 * 3600
"""How long torchrun's agent waits for workers after a SIGTERM (its default, 30 s, would cut a checkpoint short)."""


def processes_per_node(cfg: TrainerConfig, visible_gpus: int) -> int:
    """`distributed.processes_per_node`, else one process per visible GPU, else one."""
    return cfg.spec.distributed.processes_per_node or visible_gpus or 1


def torchrun_args(
    cfg: TrainerConfig, config_file: Path, env: Mapping[str, str], visible_gpus: int
) -> list[str]:
    """torchrun's arguments for this pod (pure: the environment is passed in)."""
    nodes = cfg.spec.distributed.nodes
    args = [
        f"--nproc-per-node={processes_per_node(cfg, visible_gpus)}",
        f"--shutdown-timeout={SHUTDOWN_TIMEOUT_S}",
    ]
    if nodes == 1:
        args.append("--standalone")
    else:
        rank = env.get(ENV_NODE_RANK) or env.get(ENV_NODE_RANK_FALLBACK)
        if rank is None or ENV_MASTER_ADDR not in env:
            raise RuntimeError(
                f"multi-node runs need {ENV_MASTER_ADDR} and {ENV_NODE_RANK} (or {ENV_NODE_RANK_FALLBACK}) set"
            )
        args += [
            f"--nnodes={nodes}", f"--node-rank={rank}", f"--master-addr={env[ENV_MASTER_ADDR]}",
            f"--master-port={env.get(ENV_MASTER_PORT, str(DEFAULT_MASTER_PORT))}",
        ]  # fmt: skip
    return [*args, "-m", "finetune_trainer", "--config", str(config_file)]


def writable_extensions(env: MutableMapping[str, str], scratch: Path) -> None:
    """Point `TORCH_EXTENSIONS_DIR` at a writable copy when it is not writable (the pod's root filesystem is
    read-only): DeepSpeed locks a file inside each op's folder before loading the op compiled into the image."""
    source = env.get("TORCH_EXTENSIONS_DIR")
    if not source or not Path(source).is_dir() or os.access(source, os.W_OK):
        return
    target = scratch / "torch_extensions"
    shutil.copytree(source, target, dirs_exist_ok=True)
    env["TORCH_EXTENSIONS_DIR"] = str(target)


def signal_exit_code(code: int) -> int:
    """A worker's exit code as a shell reports it: 128 + N for a process killed by signal N."""
    return 128 - code if code < 0 else code


def run_torchrun(args: list[str]) -> int:
    """Run torchrun's agent here with `args`; returns the pod's exit code (see the module docstring)."""
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(args))
    except SignalException:
        return ExitCode.INTERRUPTED
    except ChildFailedError as exc:
        sys.stderr.write(f"{exc}\n")
        _, first = exc.get_first_failure()
        return signal_exit_code(first.exitcode)
    return ExitCode.SUCCEEDED


def main(argv: list[str] | None = None) -> int:
    """Validate the config, then run torchrun; returns the exit code."""
    parser = argparse.ArgumentParser(prog="finetune_trainer.launch", description=__doc__)
    parser.add_argument(
        "--config", type=Path, default=Path(CONFIG_PATH), help="trainer config JSON (TrainerConfig)"
    )
    args = parser.parse_args(argv)
    try:
        cfg = TrainerConfig.model_validate_json(args.config.read_text())
    except Exception:  # let the trainer itself report the problem in the termination message
        os.execv(sys.executable, [sys.executable, "-m", "finetune_trainer", "--config", str(args.config)])
    import torch

    writable_extensions(os.environ, Path(tempfile.gettempdir()))
    return run_torchrun(torchrun_args(cfg, args.config, os.environ, torch.cuda.device_count()))


if __name__ == "__main__":
    sys.exit(main())
