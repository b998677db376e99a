"""Render the FineTuneJob CustomResourceDefinition from the API models.

pydantic's JSON schema (draft 2020-12) is turned into a Kubernetes structural schema: references are inlined,
optional unions unwrapped, `const` and exclusive bounds rewritten the OpenAPI v3.0 way, and every model's `rules`
attached as CEL `x-kubernetes-validations`. Called by `finetune crd`; a unit test fails when `crds/` is stale.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any

import yaml
from finetune_api import job, status
from finetune_api.base import ApiModel

CRD_FILE = f"{job.GROUP}_{job.PLURAL}.yaml"

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.preset"},
    {"name": "Method", "type": "string", "jsonPath": ".spec.method.type"},
    {
        "name": "Progress",
        "type": "integer",
        "jsonPath": ".status.progress.percent",
        "description": "Percent done",
    },
    {"name": "Loss", "type": "number", "jsonPath": ".status.progress.loss"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _models() -> dict[str, type[ApiModel]]:
    """Every API model by class name (the keys pydantic uses in `$defs`)."""
    found: dict[str, type[ApiModel]] = {}
    todo: list[type[ApiModel]] = [ApiModel]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            found[sub.__name__] = sub
            todo.append(sub)
    return found


class _Converter:
    """Converts one pydantic JSON schema (with its `$defs`) into a structural schema."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.defs: dict[str, Any] = schema.get("$defs", {})
        self.models = _models()

    def node(self, node: dict[str, Any], model: str | None = None) -> dict[str, Any]:
        node = copy.deepcopy(node)
        if "$ref" in node:
            name = node.pop("$ref").split("/")[-1]
            target = self.node(self.defs[name], model=name)
            target.update(
                {k: v for k, v in node.items() if k in ("description", "default") and v is not None}
            )
            return target
        node = self._unwrap_optional(node)
        if "$ref" in node:
            return self.node(node)
        node.pop("title", None)
        node.pop("$defs", None)
        if node.get("default", "") is None:
            node.pop("default")
        if "const" in node:
            node["enum"] = [node.pop("const")]
        for bound in ("Minimum", "Maximum"):
            if f"exclusive{bound}" in node:
                node[bound.lower()] = node.pop(f"exclusive{bound}")
                node[f"exclusive{bound}"] = True
        if node.get("x-kubernetes-preserve-unknown-fields"):
            node.pop("additionalProperties", None)
        elif isinstance(node.get("additionalProperties"), dict):
            node["additionalProperties"] = self.node(node["additionalProperties"])
        if "properties" in node:
            node["properties"] = {k: self.node(v) for k, v in node["properties"].items()}
            node.pop("additionalProperties", None)
        if "items" in node:
            node["items"] = self.node(node["items"])
        if "description" in node:
            node["description"] = inspect.cleandoc(node["description"])
        if model is not None:
            self._add_rules(node, self.models[model])
        return node

    @staticmethod
    def _unwrap_optional(node: dict[str, Any]) -> dict[str, Any]:
        options = node.get("anyOf")
        if options is None or not any(o == {"type": "null"} for o in options):
            return node
        rest = [o for o in options if o != {"type": "null"}]
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        return {**rest[0], **outer} if len(rest) == 1 else {**outer, "anyOf": rest}

    @staticmethod
    def _add_rules(node: dict[str, Any], model: type[ApiModel]) -> None:
        validations = [r.crd_validation() for r in model.rules if r.server and r.cel]
        validations += [
            {
                "rule": f"self.{f} == oldSelf.{f}",
                "message": f"{f} is immutable after creation; create a new FineTuneJob to change it",
                "fieldPath": f".{f}",
            }
            for f in model.immutable
        ]
        if validations:
            node["x-kubernetes-validations"] = validations


def _schema_of(model: type[ApiModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return _Converter(schema).node(schema, model=model.__name__)


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict (pure)."""
    # fieldPath cannot point into metadata; root rules name the field in their message instead.
    root_rules = [
        {k: v for k, v in r.crd_validation().items() if k != "fieldPath"}
        for r in job.FineTuneJob.rules
        if r.server and r.cel
    ]
    openapi = {
        "description": inspect.cleandoc(job.FineTuneJob.__doc__ or ""),
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "finetune.io/v1alpha1"},
            "kind": {"type": "string", "description": "FineTuneJob"},
            "metadata": {"type": "object"},
            "spec": _schema_of(job.FineTuneJobSpec),
            "status": _schema_of(status.FineTuneJobStatus),
        },
        "x-kubernetes-validations": root_rules,
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{job.PLURAL}.{job.GROUP}"},
        "spec": {
            "group": job.GROUP,
            "names": {
                "kind": job.KIND,
                "listKind": f"{job.KIND}List",
                "plural": job.PLURAL,
                "singular": job.KIND.lower(),
                "shortNames": ["ftj"],
                "categories": ["ml"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": job.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi},
                }
            ],
        },
    }


def render_crd() -> str:
    """The CRD as the YAML text committed under `crds/`."""
    header = "# Generated by `finetune crd` from api/finetune_api/. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120, allow_unicode=True)


def write_crds(directory: Path) -> Path:
    """Write the CRD into `directory` and return the file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CRD_FILE
    path.write_text(render_crd(), encoding="utf-8")
    return path
