"""Following a local trainer run: its JSON log lines move a rich progress bar and are copied to the run's log;
the termination message is read back leniently; a failed run's log tail is shown without the JSON events."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pydantic
from finetune_api.trainer import TerminationMessage
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

TAIL_LINES = 30
"""Lines of the log shown when a run fails unexpectedly."""


@dataclass
class Follower:
    """Reads the trainer's output: copies each line to the log as it comes and moves the bar every step."""

    log: IO[str]
    steps: list[dict[str, Any]] = field(default_factory=list)
    """This run's `progress` and `step` events."""

    def follow(self, lines: Any, console: Console) -> None:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn())  # fmt: skip
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task("loading", total=None, loss="-")
            for line in lines:
                self.log.write(line)
                self.log.flush()  # the log is followed with `tail -f` while the run goes on
                event = event_of(line)
                if event is None:
                    continue
                if event["event"] == "start":
                    progress.update(bar, description="training", total=event["total_steps"],
                                    completed=event["resumed_from"] or 0)  # fmt: skip
                elif event["event"] in ("progress", "step"):
                    self.steps.append(event)
                    progress.update(bar, completed=event["step"], loss=f"{event['loss']:.4f}")
                elif event["event"] == "lengths" and event.get("truncated"):
                    progress.console.print(truncation_warning(event), markup=False, highlight=False)
                elif event["event"] == "eval":
                    progress.console.print(f"step {event['step']}: eval loss {event['eval_loss']:.4f}")

    def tokens_per_second(self) -> float | None:
        """Tokens per second from the end of the first step of this run to the end of the last."""
        if len(self.steps) < 2 or "tokens" not in self.steps[0]:
            return None
        first, last = self.steps[0], self.steps[-1]
        seconds = float(last["time"] - first["time"])
        return float(last["tokens"] - first["tokens"]) / seconds if seconds > 0 else None


def event_of(line: str) -> dict[str, Any] | None:
    if not line.startswith('{"event"'):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


def read_summary(path: Path) -> TerminationMessage | None:
    """The termination message at `path`; None when there is none or it is not one.

    Lenient, as it may come from another trainer version: missing keys take their defaults, unknown ones are
    dropped, and so are per-file `digests` that do not parse (e.g. a note that they did not fit; manifest.json has
    them).
    """
    try:
        text = path.read_text(encoding="utf-8")
        return TerminationMessage.model_validate_json(text)
    except OSError:
        return None
    except pydantic.ValidationError:
        pass
    try:
        document = json.loads(text)
        known = {k: v for k, v in document.items() if k in TerminationMessage.model_fields and k != "digests"}
        digests = document.get("digests")
        return TerminationMessage.model_validate(
            {**known, "digests": digests if isinstance(digests, dict) else None}
        )
    except (ValueError, AttributeError):  # pydantic's ValidationError is a ValueError
        return None


def log_tail(log: Path) -> str:
    """The last lines of a run's log that are not its JSON events (a traceback, the library's own words)."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(deque((line for line in lines if event_of(line) is None), maxlen=TAIL_LINES))


def truncation_warning(event: dict[str, Any]) -> str:
    """The terminal line for the trainer's `lengths` event: how many rows were cut to maxSeqLength, and which."""
    listed = "; ".join(event.get("rows") or [])
    more = " …" if len(event.get("rows") or []) < event["truncated"] else ""
    return (
        f"⚠ {event['truncated']} rows are longer than maxSeqLength {event['max_seq_length']} and were truncated"
        f"{': ' + listed + more if listed else ''} (raise training.maxSeqLength or shorten them)"
    )
