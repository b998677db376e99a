"""The base model of every API object and the cross-field rule mechanism.

Every rule is written once, as a `Rule`: its CEL expression goes into the CRD (`x-kubernetes-validations`, checked by
the API server) and its Python twin runs in pydantic validation (`finetune validate`, the webhook, the trainer). The
integration suite checks that the API server rejects what Python rejects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel


class RuleViolation(ValueError):  # noqa: N818 - reads better at the raise site
    """A broken cross-field rule; `field` is the offending field relative to the object that owns the rule."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Rule:
    """One cross-field rule of an API object.

    `cel` is evaluated by the API server with `self` bound to the object (and `oldSelf` for transition rules);
    `check` is its Python twin and returns True when the object is valid. `field` is the path, relative to the
    object, that the error names; `server=False` marks rules CEL cannot express (checked by the webhook only).
    """

    field: str
    message: str
    check: Callable[[Any], bool]
    cel: str | None = None
    server: bool = True

    def crd_validation(self) -> dict[str, str]:
        """The `x-kubernetes-validations` entry for this rule."""
        assert self.cel is not None
        entry = {"rule": self.cel, "message": self.message}
        if self.field:
            entry["fieldPath"] = "." + self.field
        return entry


class ApiModel(BaseModel):
    """Base of all API objects: camelCase on the wire, unknown fields rejected, rules checked after parsing."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        validate_default=True,
        use_attribute_docstrings=False,
    )

    rules: ClassVar[tuple[Rule, ...]] = ()
    """Cross-field rules of this object, in the order they are checked and rendered."""

    immutable: ClassVar[tuple[str, ...]] = ()
    """Fields that cannot change after creation (CEL transition rules; the API server alone checks them)."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for rule in type(self).rules:
            if not rule.check(self):
                raise RuleViolation(rule.field, rule.message)
        return self

    def to_wire(self) -> dict[str, Any]:
        """The object as it appears in a manifest: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
