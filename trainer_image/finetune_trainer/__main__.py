"""`python -m finetune_trainer --config FILE`: validate the trainer config and run the recipe.

Started by torchrun in the workload pods (see `launch.py`) and by `local.run_local`. A config that does not validate
fails here, before any process group is formed, with the offending fields in the termination message.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pydantic
from finetune_api.errors import describe
from finetune_api.trainer import ExitCode, TrainerConfig, TrainerPaths, failed

from finetune_trainer import metrics, recipe


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load the config and run; returns the exit code."""
    parser = argparse.ArgumentParser(prog="finetune_trainer", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="trainer config JSON (TrainerConfig)")
    args = parser.parse_args(argv)
    try:
        cfg = TrainerConfig.model_validate_json(args.config.read_text())
    except (OSError, pydantic.ValidationError) as exc:
        lines = describe(exc) if isinstance(exc, pydantic.ValidationError) else [str(exc)]
        default_path = metrics.termination_message_path(TrainerPaths().termination_message_path)
        metrics.finish(default_path, failed("InvalidConfig", "; ".join(lines)))
        return ExitCode.INVALID_CONFIG
    return recipe.main(cfg)


if __name__ == "__main__":
    sys.exit(main())
