"""Turning pydantic validation errors into `field.path: what is wrong and how to fix it` lines."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from finetune_api.base import RuleViolation

_HINTS = {
    "extra_forbidden": "unknown field; remove it or fix its spelling (`kubectl explain finetunejob.spec` lists fields)",
    "missing": "required field is missing",
}


def _path(error: ErrorDetails) -> str:
    parts = [
        str(p) for p in error["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))
    ]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, RuleViolation) and cause.field:
        # Rules name fields relative to their object; tagged-union and literal branches add no path segment.
        parts.append(cause.field)
    return ".".join(parts) or "<root>"


def _message(error: ErrorDetails) -> str:
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, ValueError):
        return cause.args[0] if cause.args else str(cause)
    return _HINTS.get(error["type"], error["msg"])


def describe(exc: ValidationError) -> list[str]:
    """One line per error, each starting with the dotted path of the offending field."""
    return [f"{_path(e)}: {_message(e)}" for e in exc.errors()]
