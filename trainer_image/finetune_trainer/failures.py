"""How a failed run ends: its termination message, and whether a retry could help (its exit code).

Used by `recipe.main`, which turns any exception of the run into one of each.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from finetune_api.trainer import ExitCode, TerminationMessage, failed

from finetune_trainer import batching, checkpoint, data, export, ownership

INVALID_CONFIG_ERRORS: tuple[type[Exception], ...] = (
    data.DataError,
    ownership.CheckpointMismatch,
    checkpoint.UnsafeCheckpointError,
    batching.UnsupportedBatchingError,
    export.ExportError,
)
"""Failures no retry can fix: the dataset's content (a bad row, too few rows, an unknown format), another run's
checkpoints or result in this run's folders, a checkpoint file that is not weights-only, a batching the model's attention cannot do, or an export the exporter
cannot write or that does not reproduce the trained model. They exit with
`ExitCode.INVALID_CONFIG`, as a config that does not validate does (`__main__`), so the Job fails at once. Everything
else (unreachable storage, the hub, memory, library errors) exits `ExitCode.FAILED` and is retried."""


def failure_summary(exc: BaseException) -> TerminationMessage:
    """The termination message of a failed run: the error's kind and its message (or where it was raised)."""
    message = str(exc)
    if not message and exc.__traceback__ is not None:  # a bare `assert` deep in a library says nothing
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        message = f"raised at {Path(frame.filename).name}:{frame.lineno}: {frame.line}"
    return failed(type(exc).__name__, message)


def exit_code(exc: BaseException) -> ExitCode:
    """INVALID_CONFIG for failures no retry can fix (`INVALID_CONFIG_ERRORS`), else FAILED."""
    return ExitCode.INVALID_CONFIG if isinstance(exc, INVALID_CONFIG_ERRORS) else ExitCode.FAILED
