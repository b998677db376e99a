"""Generate helm/README.md's configuration reference (from values.schema.json and values.yaml) and metrics reference
(from the operator's registry and the trainer's gauges). `make chart-docs` rewrites them; tests/unit/test_chart_docs.py
fails when they are stale.

    python3 hack/chart_docs.py [--check]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "finetune-operator"
README = ROOT / "helm" / "README.md"
SECTIONS = ("values", "metrics")
SERIES = {"counter": "`{0}_total`", "histogram": "`{0}` (`_bucket`, `_sum`, `_count`)", "gauge": "`{0}`"}


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(values: dict[str, Any], path: list[str]) -> str:
    node: Any = values
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return "" if node is None else f"`{json.dumps(node)}`"


def _rows(schema: dict[str, Any], values: dict[str, Any], path: list[str]) -> list[str]:
    rows = []
    for key, prop in schema.get("properties", {}).items():
        here = [*path, key]
        if prop.get("type") == "object" and "properties" in prop:
            rows += _rows(prop, values, here)
            continue
        kind = prop.get("type", "")
        if "enum" in prop:
            kind = " \\| ".join(f"`{v}`" for v in prop["enum"])
        elif kind == "array":
            kind = f"array of {prop.get('items', {}).get('type', 'any')}"
        rows.append(
            f"| `{'.'.join(here)}` | {kind} | {_default(values, here)} | {_cell(prop.get('description', ''))} |"
        )
    return rows


def values_reference() -> str:
    """A table of every leaf value: key, type, default, description."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    head = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    return "\n".join(head + _rows(schema, values, []))


def metrics_reference() -> str:
    """A table of every metric the operator and the trainer export."""
    from finetune_operator.metrics import OperatorMetrics
    from finetune_trainer.metrics import _HELP  # the trainer's help texts (imports torch)
    from prometheus_client.metrics import MetricWrapperBase

    head = ["| Metric | Type | Labels | Served by | Description |", "| --- | --- | --- | --- | --- |"]
    rows = []
    for metric in vars(OperatorMetrics()).values():
        if isinstance(metric, MetricWrapperBase):
            # prometheus_client keeps these private; they are what its exposition writes.
            name, kind, labels = metric._name, metric._type, ", ".join(f"`{x}`" for x in metric._labelnames)
            where = "operator, `:8000/metrics` (the leader)"
            rows.append(
                f"| {SERIES[kind].format(name)} | {kind} | {labels} | {where} | {_cell(metric._documentation)} |"
            )
    for gauge, text in _HELP.items():
        where = "trainer rank 0, `:9400/metrics` (PodMonitor adds `finetunejob`)"
        rows.append(f"| `{gauge.value}` | gauge |  | {where} | {_cell(text)} |")
    return "\n".join(head + rows)


def render(readme: str) -> str:
    """`readme` with each generated section replaced."""
    for name, body in (("values", values_reference()), ("metrics", metrics_reference())):
        begin, end = f"<!-- BEGIN GENERATED {name} -->", f"<!-- END GENERATED {name} -->"
        start, stop = readme.index(begin) + len(begin), readme.index(end)
        readme = readme[:start] + "\n" + body + "\n" + readme[stop:]
    return readme


def main(argv: list[str]) -> int:
    current = README.read_text()
    fresh = render(current)
    if "--check" in argv:
        if fresh != current:
            print(f"{README.relative_to(ROOT)} is stale: run `make chart-docs`", file=sys.stderr)
            return 1
        return 0
    README.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
